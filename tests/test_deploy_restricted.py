"""Every pod template in deploy/k8s meets the "restricted" Pod Security Standard, and more.

The checks follow the profile's field list (kubernetes.io/docs/concepts/security/pod-security-standards,
"Restricted" and the "Baseline" rules it includes), plus what we ask beyond it: a read-only root
filesystem, no service-account token, a PodDisruptionBudget per Deployment and a NetworkPolicy.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
K8S = ROOT / "deploy" / "k8s"
ALLOWED_VOLUMES = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim",
                   "projected", "secret"}  # fmt: skip
ALLOWED_SECCOMP = {"RuntimeDefault", "Localhost"}


def _documents() -> list[dict]:
    return [doc for path in sorted(K8S.glob("*.yaml")) for doc in yaml.safe_load_all(path.read_text()) if doc]


def _pod_spec(doc: dict) -> dict | None:
    """The pod template's spec of a workload, None for other kinds."""
    spec = doc.get("spec", {})
    if doc["kind"] == "CronJob":
        spec = spec["jobTemplate"]["spec"]
    if doc["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "CronJob"):
        return spec["template"]["spec"]
    return spec if doc["kind"] == "Pod" else None


def restricted_violations(pod: dict) -> list[str]:
    """What breaks the restricted profile (and our extra rules) in one pod spec; empty when it passes."""
    wrong = []
    pod_context = pod.get("securityContext", {})
    for flag in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.get(flag):
            wrong.append(f"{flag} is set")
    for volume in pod.get("volumes", []):
        kinds = set(volume) - {"name"}
        if not kinds <= ALLOWED_VOLUMES:
            wrong.append(f"volume {volume['name']} is of type {sorted(kinds - ALLOWED_VOLUMES)}")
    if pod.get("automountServiceAccountToken") is not False:
        wrong.append("automountServiceAccountToken is not false")
    containers = pod.get("initContainers", []) + pod.get("containers", [])
    for container in containers:
        name = container["name"]
        context = container.get("securityContext", {})
        if context.get("privileged"):
            wrong.append(f"{name}: privileged")
        if context.get("allowPrivilegeEscalation") is not False:
            wrong.append(f"{name}: allowPrivilegeEscalation is not false")
        capabilities = context.get("capabilities", {})
        if "ALL" not in capabilities.get("drop", []):
            wrong.append(f"{name}: capabilities do not drop ALL")
        if set(capabilities.get("add", [])) - {"NET_BIND_SERVICE"}:
            wrong.append(f"{name}: adds capabilities {capabilities['add']}")
        if not context.get("runAsNonRoot", pod_context.get("runAsNonRoot")):
            wrong.append(f"{name}: runAsNonRoot is not true")
        if context.get("runAsUser", pod_context.get("runAsUser")) == 0:
            wrong.append(f"{name}: runs as user 0")
        seccomp = context.get("seccompProfile", pod_context.get("seccompProfile", {}))
        if seccomp.get("type") not in ALLOWED_SECCOMP:
            wrong.append(f"{name}: seccompProfile is not RuntimeDefault or Localhost")
        if any(port.get("hostPort") for port in container.get("ports", [])):
            wrong.append(f"{name}: uses a hostPort")
        if context.get("readOnlyRootFilesystem") is not True:
            wrong.append(f"{name}: the root filesystem is writable")
        mounted = {m["mountPath"] for m in container.get("volumeMounts", [])}
        if "/tmp" not in mounted:
            wrong.append(f"{name}: no writable /tmp under a read-only root filesystem")
    return wrong


WORKLOADS = [doc for doc in _documents() if _pod_spec(doc) is not None]


@pytest.mark.parametrize("doc", WORKLOADS, ids=lambda d: f"{d['kind']}/{d['metadata']['name']}")
def test_every_pod_template_meets_the_restricted_profile(doc):
    assert restricted_violations(_pod_spec(doc)) == []


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        (("containers", 0, "securityContext", "allowPrivilegeEscalation"), True, "allowPrivilegeEscalation"),
        (("containers", 0, "securityContext", "capabilities", "drop"), [], "do not drop ALL"),
        (("securityContext", "seccompProfile", "type"), "Unconfined", "seccompProfile"),
        (("containers", 0, "securityContext", "runAsNonRoot"), False, "runAsNonRoot"),
        (("containers", 0, "securityContext", "readOnlyRootFilesystem"), False, "root filesystem is writable"),
        (("automountServiceAccountToken",), True, "automountServiceAccountToken"),
        (("hostNetwork",), True, "hostNetwork"),
        (("volumes", 0), {"name": "host", "hostPath": {"path": "/"}}, "hostPath"),
    ],
)
def test_the_check_catches_each_broken_rule(path, value, expected):
    pod = copy.deepcopy(_pod_spec(next(d for d in WORKLOADS if d["kind"] == "Deployment")))
    target = pod
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    assert any(expected in problem for problem in restricted_violations(pod)), restricted_violations(pod)


def test_every_deployment_has_a_disruption_budget_that_selects_its_pods():
    budgets = [d for d in _documents() if d["kind"] == "PodDisruptionBudget"]
    for deployment in (d for d in _documents() if d["kind"] == "Deployment"):
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        matching = [b for b in budgets if b["spec"]["selector"]["matchLabels"].items() <= labels.items()]
        assert len(matching) == 1, deployment["metadata"]["name"]
        # Selecting exactly this Deployment's pods: one budget may not span both variants.
        assert matching[0]["spec"]["selector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"]
        assert matching[0]["spec"].get("maxUnavailable", 0) >= 1 or "minAvailable" in matching[0]["spec"]


def test_the_network_policy_admits_only_the_ingress_and_lets_out_only_dns_and_postgresql():
    [policy] = [d for d in _documents() if d["kind"] == "NetworkPolicy"]
    spec = policy["spec"]
    assert set(spec["policyTypes"]) == {"Ingress", "Egress"}
    pod_labels = next(d for d in WORKLOADS if d["kind"] == "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert spec["podSelector"]["matchLabels"].items() <= pod_labels.items()
    [ingress] = spec["ingress"]
    assert [p["port"] for p in ingress["ports"]] == [3000]
    assert all("namespaceSelector" in source and "ipBlock" not in source for source in ingress["from"])
    egress_ports = {(p["protocol"], p["port"]) for rule in spec["egress"] for p in rule["ports"]}
    assert egress_ports == {("UDP", 53), ("TCP", 53), ("TCP", 5432)}
