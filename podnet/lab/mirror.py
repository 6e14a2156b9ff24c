"""The webhook's view of Namespaces, Subnets and IPPools in the lab: a folder kept in step
with the API server.

``podnet webhook`` learns which namespace is bound to which subnet, and which Subnets and
IPPools exist, from ``--manifests DIR`` (re-read when a file changes). In the lab the
truth is the lab's API server, so this mirror follows those three kinds there (list and
watch through ``podnet.kube``) and rewrites one file, ``cluster.yaml``, whenever they
change: what a user applies reaches the webhook as it would in a cluster, by watching.
The file is replaced atomically and only when its content changes, so the webhook never
reads half a file or re-registers for nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client

from podnet import kube

log = logging.getLogger(__name__)

KINDS = ("Namespace", "Subnet", "IPPool")
FILENAME = "cluster.yaml"
API_VERSIONS = {"Namespace": "v1", "Subnet": "kubeovn.io/v1", "IPPool": "kubeovn.io/v1"}


def trimmed(kind: str, obj: Mapping[str, Any]) -> dict[str, Any]:
    """What the webhook reads of an object: identity, labels, annotations and spec."""
    metadata = obj.get("metadata") or {}
    kept: dict[str, Any] = {"name": metadata.get("name")}
    for key in ("labels", "annotations"):
        if metadata.get(key):
            kept[key] = dict(metadata[key])
    document: dict[str, Any] = {"apiVersion": API_VERSIONS[kind], "kind": kind,
                                "metadata": kept}
    if obj.get("spec") is not None:
        document["spec"] = obj["spec"]
    return document


def render(stores: Mapping[str, kube.Store]) -> str:
    documents = [trimmed(kind, obj) for kind in KINDS for obj in stores[kind].list()]
    return yaml.safe_dump_all(documents, sort_keys=True) if documents else ""


def write_if_changed(folder: Path, text: str) -> bool:
    """Replace ``cluster.yaml`` with ``text`` unless it holds that already."""
    target = folder / FILENAME
    with contextlib.suppress(FileNotFoundError):
        if target.read_text() == text:
            return False
    folder.mkdir(parents=True, exist_ok=True)
    temporary = folder / f".{FILENAME}.tmp"
    temporary.write_text(text)
    os.replace(temporary, target)
    return True


class ConfigMirror:
    """Keeps ``folder/cluster.yaml`` equal to the API's Namespaces, Subnets and IPPools."""

    def __init__(self, api: client.ApiClient, folder: Path,
                 settings: kube.WatchSettings | None = None) -> None:
        self.folder = folder
        self.changed = asyncio.Event()
        self.writes = 0
        self.watchers = {kind: kube.Watcher(kube.lister(api, kind), kind, self._on_event,
                                            settings=settings) for kind in KINDS}

    async def _on_event(self, _: kube.WatchEvent) -> None:
        self.changed.set()

    async def run(self, settle_s: float = 0.05) -> None:
        """Follow the three kinds until cancelled."""
        for watcher in self.watchers.values():
            watcher.start()
        try:
            for watcher in self.watchers.values():
                await watcher.store.wait_synced()
            while True:
                await self.changed.wait()
                await asyncio.sleep(settle_s)  # one write for a burst of changes
                self.changed.clear()
                text = render({k: w.store for k, w in self.watchers.items()})
                if write_if_changed(self.folder, text):
                    self.writes += 1
                    log.info("webhook configuration mirrored to %s", self.folder / FILENAME)
        finally:
            await asyncio.gather(*(w.stop() for w in self.watchers.values()))
