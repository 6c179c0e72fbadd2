"""The Kubernetes manifests in deploy/k8s: schema-valid, and wired to what the service really reads."""

from __future__ import annotations

import copy
from dataclasses import fields
from pathlib import Path

import pytest
import yaml
from bentoml._internal.container.generate import BENTO_PATH

from service.model_choice import default_model_path
from service.settings import Settings, _var

ROOT = Path(__file__).resolve().parents[1]
K8S = ROOT / "deploy" / "k8s"
BENTOFILE = ROOT / "deploy" / "bentofile.yaml"
SETTINGS_VARS = {_var(f.name) for f in fields(Settings)}
BENTOML_PORT = 3000  # what `bentoml serve` listens on in the image (EXPOSE 3000)
PROBE_PATHS = {"/livez", "/readyz"}  # BentoML's own health endpoints (docs/contract.md)
KUBERNETES_VERSIONS = ["1.29", "1.37"]  # the oldest we document, and the newest schema bundled


def _documents() -> list[tuple[str, dict]]:
    return [
        (path.name, doc) for path in sorted(K8S.glob("*.yaml")) for doc in yaml.safe_load_all(path.read_text()) if doc
    ]


def _of_kind(kind: str) -> dict[str, dict]:
    return {doc["metadata"]["name"]: doc for _, doc in _documents() if doc["kind"] == kind}


DEPLOYMENTS = _of_kind("Deployment")


def _container(deployment: dict) -> dict:
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    return container


def _env(deployment: dict) -> dict[str, str]:
    """The literal values; entries taken from a Secret are in _secret_env."""
    return {e["name"]: e["value"] for e in _container(deployment).get("env", []) if "value" in e}


def _secret_env(deployment: dict) -> dict[str, dict]:
    return {e["name"]: e["valueFrom"]["secretKeyRef"] for e in _container(deployment).get("env", [])
            if "secretKeyRef" in e.get("valueFrom", {})}  # fmt: skip


def _cpu_cores(quantity: str | int) -> float:
    text = str(quantity)
    return float(text[:-1]) / 1000 if text.endswith("m") else float(text)


def test_the_manifests_hold_both_variants_a_service_and_an_autoscaler_each_and_the_finetune_job():
    kinds = sorted((name, doc["kind"], doc["metadata"]["name"]) for name, doc in _documents())
    assert kinds == [
        ("cpu.yaml", "Deployment", "wardrobe-cpu"),
        ("cpu.yaml", "HorizontalPodAutoscaler", "wardrobe-cpu"),
        ("cpu.yaml", "PodDisruptionBudget", "wardrobe-cpu"),
        ("finetune-job.yaml", "Job", "wardrobe-finetune"),
        ("gpu.yaml", "Deployment", "wardrobe-gpu"),
        ("gpu.yaml", "HorizontalPodAutoscaler", "wardrobe-gpu"),
        ("gpu.yaml", "PodDisruptionBudget", "wardrobe-gpu"),
        ("network-policy.yaml", "NetworkPolicy", "wardrobe"),
        ("service.yaml", "Service", "wardrobe"),
    ]


def _validator():
    """The schema validator, a dev dependency: when it is missing the check fails, never skips."""
    try:
        import kubernetes_validate
    except ImportError:
        pytest.fail(
            "kubernetes-validate is not installed, so the manifests cannot be checked against the "
            "Kubernetes schema; `make test` installs it (the dev extra: pip install -e '.[dev]')"
        )
    return kubernetes_validate


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("doc", [doc for _, doc in _documents()], ids=lambda d: f"{d['kind']}/{d['metadata']['name']}")
def test_every_manifest_passes_the_kubernetes_schema(doc, version):
    kubernetes_validate = _validator()
    errors = []
    try:
        kubernetes_validate.validate(doc, version, strict=True)
    except kubernetes_validate.ValidationError as exc:  # names the bad field
        errors.append(str(exc))
    assert not errors, errors


def test_the_schema_check_catches_a_misspelt_field():
    kubernetes_validate = _validator()
    deployment = copy.deepcopy(DEPLOYMENTS["wardrobe-cpu"])
    container = _container(deployment)
    container["readinesProbe"] = container.pop("readinessProbe")
    with pytest.raises(kubernetes_validate.ValidationError, match="readinesProbe"):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSIONS[0], strict=True)


@pytest.mark.parametrize("name", sorted(DEPLOYMENTS))
def test_env_uses_only_variables_the_service_reads_and_they_parse(name):
    env = _env(DEPLOYMENTS[name])
    assert set(env) <= SETTINGS_VARS, f"not read by service/settings.py: {set(env) - SETTINGS_VARS}"
    # The model path exists only in the image, the database URL in the Secret; everything else
    # must pass the service's own check.
    shared_database = {"WARDROBE_DB": "postgresql://wardrobe:secret@postgres:5432/wardrobe"}
    settings = Settings.from_env({k: v for k, v in env.items() if k != "WARDROBE_MODEL"} | shared_database)
    assert settings.max_batch_size > 0 and settings.workers > 0 and settings.threads > 0


@pytest.mark.parametrize("name", sorted(DEPLOYMENTS))
def test_the_model_path_is_the_shipped_model_inside_the_bento(name, monkeypatch):
    monkeypatch.delenv("WARDROBE_MODEL", raising=False)
    relative = default_model_path().relative_to(ROOT)  # models/cnn.onnx, the shipped model
    bentofile = yaml.safe_load(BENTOFILE.read_text())
    assert any(Path(str(relative)).match(p) for p in bentofile["include"]), bentofile["include"]
    assert _env(DEPLOYMENTS[name])["WARDROBE_MODEL"] == f"{BENTO_PATH}/src/{relative}"


@pytest.mark.parametrize("name", sorted(DEPLOYMENTS))
def test_probes_ask_the_health_endpoints_on_the_served_port(name):
    container = _container(DEPLOYMENTS[name])
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http": BENTOML_PORT}
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/livez"
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        get = container[probe]["httpGet"]
        assert get["path"] in PROBE_PATHS
        assert ports.get(get["port"], get["port"]) == BENTOML_PORT


@pytest.mark.parametrize("name", sorted(DEPLOYMENTS))
def test_resources_fit_the_workers_the_service_starts(name):
    container = _container(DEPLOYMENTS[name])
    resources = container["resources"]
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(resources[kind]), f"{kind} must set cpu and memory"
    env = _env(DEPLOYMENTS[name])
    # os.cpu_count() in a pod is the node's, so workers and threads must be set, and fit the limit.
    assert "WARDROBE_WORKERS" in env and "WARDROBE_THREADS" in env
    cores = int(env["WARDROBE_WORKERS"]) * int(env["WARDROBE_THREADS"])
    assert cores <= _cpu_cores(resources["limits"]["cpu"])


def test_only_the_gpu_variant_asks_for_a_gpu_and_it_batches_bigger():
    gpu, cpu = DEPLOYMENTS["wardrobe-gpu"], DEPLOYMENTS["wardrobe-cpu"]
    gpu_resources = _container(gpu)["resources"]
    assert int(gpu_resources["limits"]["nvidia.com/gpu"]) == 1
    assert int(gpu_resources["requests"].get("nvidia.com/gpu", 1)) == 1
    assert "nvidia.com/gpu" not in yaml.safe_dump(cpu)
    assert _env(gpu)["WARDROBE_DEVICE"] == "cuda" and _env(cpu)["WARDROBE_DEVICE"] == "cpu"
    assert int(_env(gpu)["WARDROBE_MAX_BATCH_SIZE"]) > int(_env(cpu)["WARDROBE_MAX_BATCH_SIZE"])


@pytest.mark.parametrize("name", sorted(DEPLOYMENTS))
def test_pods_drain_before_they_are_killed(name):
    pod = DEPLOYMENTS[name]["spec"]["template"]["spec"]
    env = _env(DEPLOYMENTS[name])
    pre_stop = _container(DEPLOYMENTS[name])["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep"
    longest_request = float(env.get("WARDROBE_TIMEOUT_S", Settings.timeout_s))
    assert pod["terminationGracePeriodSeconds"] > float(pre_stop[1]) + longest_request


@pytest.mark.parametrize("name", sorted(DEPLOYMENTS))
def test_service_links_cannot_leak_into_the_settings(name):
    # A Service called "wardrobe" injects WARDROBE_SERVICE_HOST, WARDROBE_PORT, ... by default.
    assert DEPLOYMENTS[name]["spec"]["template"]["spec"]["enableServiceLinks"] is False


@pytest.mark.parametrize("name", sorted(DEPLOYMENTS))
def test_the_service_and_the_autoscaler_reach_the_deployment(name):
    deployment = DEPLOYMENTS[name]
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    [service] = _of_kind("Service").values()
    assert service["spec"]["selector"].items() <= pod_labels.items()
    port_names = {p["name"] for p in _container(deployment)["ports"]}
    assert all(p["targetPort"] in port_names for p in service["spec"]["ports"])

    hpa = _of_kind("HorizontalPodAutoscaler")[name]
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                             "name": name}  # fmt: skip
    assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
    # Utilisation is measured against the request: without one the autoscaler does nothing.
    for metric in hpa["spec"]["metrics"]:
        resource = metric["resource"]["name"]
        assert resource in _container(deployment)["resources"]["requests"]


@pytest.mark.parametrize("name", sorted(DEPLOYMENTS))
def test_the_image_is_the_bento_built_from_the_bentofile(name):
    bento_name = yaml.safe_load(BENTOFILE.read_text())["name"]
    image = _container(DEPLOYMENTS[name])["image"]
    assert image.rsplit("/", 1)[-1].split(":")[0] == bento_name


@pytest.mark.parametrize("name", sorted(DEPLOYMENTS))
def test_the_wardrobe_database_and_token_come_from_a_required_secret(name):
    secrets = _secret_env(DEPLOYMENTS[name])
    assert set(secrets) == {"WARDROBE_DB", "WARDROBE_TOKEN"} <= SETTINGS_VARS
    # Not optional: a pod without the Secret does not start, rather than keep a SQLite file of its own.
    assert {(s["name"], s["key"], s.get("optional", False)) for s in secrets.values()} == {
        ("wardrobe", "database-url", False), ("wardrobe", "token", False)}  # fmt: skip


@pytest.mark.parametrize("name", sorted(DEPLOYMENTS))
def test_replicas_refuse_a_sqlite_file_of_their_own(name):
    env = {k: v for k, v in _env(DEPLOYMENTS[name]).items() if k != "WARDROBE_MODEL"}
    assert env["WARDROBE_REPLICATED"] == "true"
    with pytest.raises(ValueError, match="WARDROBE_DB: replicas need one shared PostgreSQL database"):
        Settings.from_env(env | {"WARDROBE_DB": "/var/lib/wardrobe.db"})
    with pytest.raises(ValueError, match="the default SQLite file"):
        Settings.from_env(env)


def test_any_kubernetes_pod_counts_as_a_replica_unless_told_otherwise():
    in_a_pod = {"KUBERNETES_SERVICE_HOST": "10.0.0.1", "WARDROBE_DB": "/var/lib/wardrobe.db"}
    with pytest.raises(ValueError, match="WARDROBE_REPLICATED=false"):
        Settings.from_env(in_a_pod)
    assert Settings.from_env(in_a_pod | {"WARDROBE_REPLICATED": "false"}).replicated is False
    assert Settings.from_env({"WARDROBE_DB": "/var/lib/wardrobe.db"}).replicated is False


def test_the_finetune_job_trains_on_the_shared_wardrobe_publishes_and_gets_no_traffic():
    [job] = _of_kind("Job").values()
    [container] = job["spec"]["template"]["spec"]["containers"]
    script = container["args"][0]
    assert "wardrobe train --config configs/finetune.toml" in script and "$WARDROBE_DB" in script
    assert "--publish" in script and "promote" not in script  # a candidate; a person promotes it
    secrets = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in container["env"] if "valueFrom" in e}
    assert secrets["WARDROBE_DB"] == {"name": "wardrobe", "key": "database-url"}
    [service] = _of_kind("Service").values()
    assert not service["spec"]["selector"].items() <= job["spec"]["template"]["metadata"]["labels"].items()
