"""What podnet honours of Kube-OVN's API, and the refusals that name what it does not.

The examples walk (``test_kube_ovn_examples.py``) covers Kube-OVN's own documents; these
cases pin the rules one at a time.
"""

from __future__ import annotations

from typing import Any

import pytest

from webhook.compat import check_object, provider_of


def pod(annotations: dict[str, str]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "annotations": annotations}, "spec": {}}


@pytest.mark.parametrize(
    "key",
    ["ip_address", "mac_address", "ip_pool", "logical_switch", "ingress_rate", "egress_rate",
     "allocated", "cidr", "gateway", "routed"],
)
def test_the_pod_annotations_podnet_honours_are_accepted(key: str) -> None:
    assert check_object(pod({f"ovn.kubernetes.io/{key}": "x"})).accepted


def test_annotations_of_other_tools_are_none_of_podnets_business() -> None:
    verdict = check_object(pod({
        "kubectl.kubernetes.io/last-applied-configuration": "{}",
        "kubectl.kubernetes.io/default-container": "app",
        "k8s.v1.cni.cncf.io/networks": "macvlan-conf",
        "prometheus.io/scrape": "true",
    }))
    assert verdict.accepted


def test_port_security_on_is_what_podnet_always_does_and_off_is_refused() -> None:
    assert check_object(pod({"ovn.kubernetes.io/port_security": "true"})).accepted
    verdict = check_object(pod({"ovn.kubernetes.io/port_security": "false"}))
    assert verdict.reason == (
        "annotation ovn.kubernetes.io/port_security is not supported by podnet (port "
        "security switching; only 'true' is accepted: podnet always enforces port security)"
    )


def test_an_unknown_ovn_annotation_is_refused_rather_than_ignored() -> None:
    verdict = check_object(pod({"ovn.kubernetes.io/made_up": "1"}))
    assert verdict.reason == (
        "annotation ovn.kubernetes.io/made_up is not supported by podnet (unknown to podnet)"
    )


def test_every_refused_annotation_of_an_object_is_named_in_one_message() -> None:
    verdict = check_object(pod({"ovn.kubernetes.io/snat": "1.2.3.4",
                                "ovn.kubernetes.io/eip": "1.2.3.5"}))
    assert "ovn.kubernetes.io/eip" in verdict.reason
    assert "ovn.kubernetes.io/snat" in verdict.reason


@pytest.mark.parametrize(
    ("key", "provider"),
    [
        ("attachnet.default.ovn.kubernetes.io/routes", "attachnet.default.ovn"),
        ("attachnet.default.kubernetes.io/ip_address.net1", "attachnet.default"),
        ("macvlan.default.kubernetes.io/logical_switch", "macvlan.default"),
    ],
)
def test_provider_scoped_keys_are_recognised_with_their_provider(key: str, provider: str) -> None:
    scoped = provider_of(key)
    assert scoped is not None and scoped[0] == provider
    assert not check_object(pod({key: "x"})).accepted


@pytest.mark.parametrize(
    "key",
    ["kubectl.kubernetes.io/last-applied-configuration", "ovn.kubernetes.io/ip_address",
     "pod-security.kubernetes.io/enforce", "no-slash"],
)
def test_keys_that_are_not_provider_scoped_are_not_mistaken_for_one(key: str) -> None:
    assert provider_of(key) is None


def test_replacing_the_default_network_through_multus_is_refused() -> None:
    verdict = check_object(pod({"v1.multus-cni.io/default-network": "default/sriov"}))
    assert "v1.multus-cni.io/default-network" in verdict.reason


def test_a_cronjob_is_checked_through_its_job_template() -> None:
    cronjob = {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "c"},
               "spec": {"jobTemplate": {"spec": {"template": {"metadata": {
                   "annotations": {"ovn.kubernetes.io/mirror": "true"}}}}}}}
    verdict = check_object(cronjob)
    assert verdict.reason.startswith(
        "spec.jobTemplate.spec.template.metadata.annotations: annotation "
        "ovn.kubernetes.io/mirror"
    )


def test_a_subnet_is_judged_by_the_ipam_parser_naming_the_field() -> None:
    spec = {"cidrBlock": "10.9.0.0/24", "vlan": "vlan1"}
    subnet = {"apiVersion": "kubeovn.io/v1", "kind": "Subnet", "metadata": {"name": "s"},
              "spec": spec}
    verdict = check_object(subnet)
    assert verdict.reason.startswith("Subnet s: spec.vlan vlan1: is not supported by podnet")
    del spec["vlan"]
    assert check_object(subnet).accepted


def test_kube_ovn_kinds_podnet_lacks_are_refused_by_kind() -> None:
    vip = {"apiVersion": "kubeovn.io/v1", "kind": "Vip", "metadata": {"name": "v"}}
    assert check_object(vip).reason == (
        "kind Vip (kubeovn.io/v1) is not supported by podnet (VIPs); "
        "podnet implements Subnet and IPPool"
    )


def test_the_interconnection_config_map_is_accepted_when_valid_and_refused_by_key() -> None:
    data = {"enable-ic": "true", "az-name": "az1", "ic-db-host": "192.168.65.3",
            "gw-nodes": "az1-gw", "auto-route": "true"}
    ic: dict[str, Any] = {"apiVersion": "v1", "kind": "ConfigMap",
                          "metadata": {"name": "ovn-ic-config", "namespace": "kube-system"},
                          "data": data}
    assert check_object(ic).accepted
    bad = {**ic, "data": {**data, "az-name": "AZ 1"}}
    assert check_object(bad).reason == (
        "ConfigMap kube-system/ovn-ic-config data.az-name 'AZ 1': must be lower-case "
        "letters, digits, '-' and '_', starting and ending with a letter or digit")
    port = {**ic, "data": {**data, "ic-nb-port": "70000"}}
    assert "data.ic-nb-port '70000': must be a TCP port" in check_object(port).reason
    missing = {**ic, "data": {"enable-ic": "true"}}
    assert "data.az-name '': is required" in check_object(missing).reason
    assert check_object({**ic, "data": {"enable-ic": "false"}}).accepted
    other = {**ic, "metadata": {"name": "app-config", "namespace": "default"},
             "data": {"az-name": "AZ 1"}}
    assert check_object(other).accepted


def test_an_attachment_using_kube_ovn_ipam_is_refused_and_a_plain_one_is_not() -> None:
    def nad(config: str) -> dict[str, Any]:
        return {"apiVersion": "k8s.cni.cncf.io/v1", "kind": "NetworkAttachmentDefinition",
                "metadata": {"name": "n", "namespace": "default"}, "spec": {"config": config}}

    refused = check_object(nad('{"type": "macvlan", "ipam": {"type": "kube-ovn"}}'))
    assert refused.reason.startswith("NetworkAttachmentDefinition default/n spec.config")
    assert check_object(nad('{"type": "macvlan", "ipam": {"type": "dhcp"}}')).accepted


def test_a_namespace_may_name_its_subnet_and_nothing_else() -> None:
    def namespace(annotations: dict[str, str]) -> dict[str, Any]:
        return {"apiVersion": "v1", "kind": "Namespace",
                "metadata": {"name": "n", "annotations": annotations}}

    assert check_object(namespace({"ovn.kubernetes.io/logical_switch": "s"})).accepted
    verdict = check_object(namespace({"ovn.kubernetes.io/exclude_ips": "10.0.0.1"}))
    assert "ovn.kubernetes.io/exclude_ips" in verdict.reason
