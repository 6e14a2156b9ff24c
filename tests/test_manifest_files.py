"""Reading manifest files: whatever a file holds, the reader answers with a problem that
names the file and the line, bounded in time and size, and goes on with the other files."""

from __future__ import annotations

import time
from pathlib import Path

from ipam.register import register_ipam_objects
from ipam.store import Ipam
from podnet_plumbing.manifests import MAX_FILE_BYTES, read_manifests

SUBNET = """\
apiVersion: kubeovn.io/v1
kind: Subnet
metadata: {name: fine}
spec: {cidrBlock: 10.70.0.0/24}
"""
LAUGHS = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 10)}]\n" for i in range(8))


def read(tmp_path: Path, name: str, content: bytes) -> tuple[list[str], list[str]]:
    (tmp_path / "00-fine.yaml").write_text(SUBNET)
    (tmp_path / name).write_bytes(content)
    manifests, problems = read_manifests([tmp_path])
    return [m.name for m in manifests], [str(p) for p in problems]


def test_a_mapping_key_that_is_a_list_is_a_problem_not_a_crash(tmp_path: Path) -> None:
    names, problems = read(tmp_path, "10-bad.yaml", b"kind: Subnet\n? [a, b]\n: c\n")
    assert names == ["fine"]
    assert problems == [f"{tmp_path / '10-bad.yaml'}: cannot be read: a mapping key must be "
                        "a plain value, not a list or a mapping\n  in \"<unicode string>\", "
                        "line 2, column 3:\n    ? [a, b]\n      ^"]


def test_a_file_that_is_not_utf8_is_a_problem_naming_its_line(tmp_path: Path) -> None:
    names, problems = read(tmp_path, "10-latin1.yaml", b"kind: Subnet\nmetadata: {name: caf\xe9}\n")
    assert names == ["fine"]
    assert problems == [f"{tmp_path / '10-latin1.yaml'}: cannot be read: line 2: is not UTF-8 "
                        "text (byte 0xe9)"]


def test_a_billion_laughs_is_refused_quickly_with_a_short_message(tmp_path: Path) -> None:
    started = time.monotonic()
    names, problems = read(tmp_path, "10-laughs.yaml", LAUGHS.encode())
    assert time.monotonic() - started < 5  # not a timing assertion on podnet: a guard
    assert names == ["fine"]
    (problem,) = problems
    assert problem.endswith("expands to more than 1000000 values (YAML aliases)")
    assert len(problem) < 300


def test_nesting_deeper_than_the_parser_takes_is_a_problem(tmp_path: Path) -> None:
    names, problems = read(tmp_path, "10-deep.yaml", b"a: " + b"[" * 20000 + b"]" * 20000)
    assert names == ["fine"]
    assert problems == [f"{tmp_path / '10-deep.yaml'}: cannot be read: nests too deeply to "
                        "be read"]


def test_a_file_larger_than_the_limit_is_not_read(tmp_path: Path) -> None:
    names, problems = read(tmp_path, "10-huge.yaml", b"#" * (MAX_FILE_BYTES + 1))
    assert names == ["fine"]
    assert problems == [f"{tmp_path / '10-huge.yaml'}: cannot be read: is larger than 16 MiB"]


async def test_a_refusal_quoting_a_huge_value_is_cut_short(tmp_path: Path, ipam: Ipam) -> None:
    huge = "[" + ", ".join(f"10.{i % 250}.0.0/24" for i in range(50_000)) + "]"
    subnet = f"apiVersion: kubeovn.io/v1\nkind: Subnet\nmetadata: {{name: big}}\n" \
             f"spec: {{cidrBlock: {huge}}}\n"
    (tmp_path / "big.yaml").write_text(subnet)
    manifests, _ = read_manifests([tmp_path])
    (problem,) = (await register_ipam_objects(ipam, manifests)).problems
    assert len(problem.message) < 600 and problem.message.endswith("characters)")
