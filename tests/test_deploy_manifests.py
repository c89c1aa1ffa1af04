"""Static checks of the Kubernetes manifests in deploy/ and of PRODUCTION_DEPLOYMENT.md.

No cluster is needed: every YAML document is parsed with ``yaml.safe_load_all`` and
checked for the fields its kind needs and for the links between the objects
(selectors, ports, volumes, the key file, the metrics port).
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from tsbatch._cli import EXIT_BAD_INPUT, EXIT_CANNOT_WRITE, EXIT_ROWS_FAILED

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
GUIDE = ROOT / "PRODUCTION_DEPLOYMENT.md"
ALERTS = ROOT / "monitoring" / "alerts.yml"

NAMESPACE = "tsbatch"
CLUSTER_SCOPED = {"Namespace"}
NAME_LABEL = "app.kubernetes.io/name"
PART_OF_LABEL = "app.kubernetes.io/part-of"
TORCHSERVE_IMAGE = "registry.example.com/tsbatch/torchserve-demo:0.1.0"
TSBATCH_IMAGE = "registry.example.com/tsbatch/tsbatch:0.1.0"
TORCHSERVE_PORTS = {"inference": 8080, "management": 8081, "metrics": 8082}
EXPECTED_FILES = {
    "namespace.yaml",
    "torchserve-configmap.yaml",
    "torchserve-deployment.yaml",
    "torchserve-service.yaml",
    "tsbatch-cronjob.yaml",
    "tsbatch-job.yaml",
    "networkpolicy.yaml",
    "secrets.yaml",
    "pdb.yaml",
}
ALERT_HEADINGS = [
    "### TorchServeConnectionDown",
    "### TorchServeHighErrorRate",
    "### TorchServeCircuitBreakerOpen",
    "### TorchServeHighLatencyP95",
    "### TsbatchJobNotSucceeded",
]

Manifest = dict[str, Any]


def _load() -> list[tuple[str, Manifest]]:
    documents = []
    for path in sorted(DEPLOY.glob("*.yaml")):
        with path.open() as stream:
            documents.extend((path.name, doc) for doc in yaml.safe_load_all(stream) if doc is not None)
    return documents


DOCUMENTS = _load()


def _doc_id(entry: tuple[str, Manifest]) -> str:
    path, doc = entry
    return f"{path}:{doc.get('kind')}/{(doc.get('metadata') or {}).get('name')}"


def _objects(kind: str) -> list[Manifest]:
    return [doc for _, doc in DOCUMENTS if doc.get("kind") == kind]


def _one(kind: str, name: str | None = None) -> Manifest:
    found = [doc for doc in _objects(kind) if name is None or doc["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def _pod_template(doc: Manifest) -> Manifest:
    """The pod template of a Deployment, Job or CronJob."""
    if doc["kind"] == "CronJob":
        return doc["spec"]["jobTemplate"]["spec"]["template"]
    template: Manifest = doc["spec"]["template"]
    return template


WORKLOADS = [doc for _, doc in DOCUMENTS if doc.get("kind") in {"Deployment", "Job", "CronJob"}]
BATCH_WORKLOADS = [doc for doc in WORKLOADS if doc["kind"] in {"Job", "CronJob"}]


def _workload_id(doc: Manifest) -> str:
    return f"{doc['kind']}/{doc['metadata']['name']}"


def _job_spec(doc: Manifest) -> Manifest:
    spec: Manifest = doc["spec"]["jobTemplate"]["spec"] if doc["kind"] == "CronJob" else doc["spec"]
    return spec


def _containers(pod_spec: Manifest) -> Iterator[Manifest]:
    yield from pod_spec.get("initContainers", [])
    yield from pod_spec["containers"]


def _container(pod_spec: Manifest, name: str) -> Manifest:
    found = [c for c in _containers(pod_spec) if c["name"] == name]
    assert len(found) == 1, f"no single container {name!r}"
    return found[0]


def _env(container: Manifest) -> dict[str, str]:
    return {item["name"]: item["value"] for item in container.get("env", []) if "value" in item}


def _option(args: list[str], name: str) -> str | None:
    """The value of ``--name=value`` or ``--name value`` in ``args``."""
    for index, arg in enumerate(args):
        if arg.startswith(f"{name}="):
            return arg.split("=", 1)[1]
        if arg == name and index + 1 < len(args):
            return args[index + 1]
    return None


def _properties(text: str) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in text.splitlines() if "=" in line and not line.startswith("#"))
    return {key.strip(): value.strip() for key, value in pairs}


_SUFFIXES = {"m": 1e-3, "": 1.0, "k": 1e3, "M": 1e6, "G": 1e9, "Ki": 2.0**10, "Mi": 2.0**20, "Gi": 2.0**30}


def _quantity(value: object) -> float:
    match = re.fullmatch(r"([0-9.]+)([A-Za-z]*)", str(value))
    assert match is not None and match.group(2) in _SUFFIXES, f"not a Kubernetes quantity: {value!r}"
    return float(match.group(1)) * _SUFFIXES[match.group(2)]


def _github_anchor(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading."""
    text = heading.lstrip("#").strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def _torchserve() -> Manifest:
    return _one("Deployment", "torchserve")


def _torchserve_container() -> Manifest:
    return _container(_pod_template(_torchserve())["spec"], "torchserve")


def _config() -> dict[str, str]:
    return _properties(_one("ConfigMap", "torchserve-config")["data"]["config.properties"])


def _classify_container(doc: Manifest) -> Manifest:
    return _container(_pod_template(doc)["spec"], "tsbatch")


def _mount_volume(pod_spec: Manifest, container: Manifest, path: str) -> tuple[str, Manifest]:
    """The mount path and volume under which ``path`` lies (the deepest mount wins)."""
    mounts = [m for m in container.get("volumeMounts", []) if (path + "/").startswith(m["mountPath"] + "/")]
    assert mounts, f"{path} is on no volume of container {container['name']}"
    mount = max(mounts, key=lambda m: len(m["mountPath"]))
    volume = next(v for v in pod_spec["volumes"] if v["name"] == mount["name"])
    return mount["mountPath"], volume


def _network_policy_for(name: str) -> Manifest:
    policies = [
        p
        for p in _objects("NetworkPolicy")
        if p["spec"]["podSelector"].get("matchLabels", {}).get(NAME_LABEL) == name
    ]
    assert len(policies) == 1, f"expected one NetworkPolicy selecting {name} pods"
    return policies[0]


def _peer_name(peer: Manifest) -> str | None:
    return (peer.get("podSelector") or {}).get("matchLabels", {}).get(NAME_LABEL)


# -- files and common fields ------------------------------------------------------------


def test_deploy_holds_exactly_the_named_manifest_files() -> None:
    assert {path.name for path in DEPLOY.glob("*.yaml")} == EXPECTED_FILES


@pytest.mark.parametrize("entry", DOCUMENTS, ids=_doc_id)
def test_every_document_names_api_version_kind_and_name(entry: tuple[str, Manifest]) -> None:
    _, doc = entry
    assert isinstance(doc.get("apiVersion"), str) and doc["apiVersion"]
    assert isinstance(doc.get("kind"), str) and doc["kind"]
    assert isinstance(doc.get("metadata", {}).get("name"), str) and doc["metadata"]["name"]


@pytest.mark.parametrize("entry", DOCUMENTS, ids=_doc_id)
def test_namespaced_documents_live_in_the_tsbatch_namespace(entry: tuple[str, Manifest]) -> None:
    _, doc = entry
    if doc["kind"] in CLUSTER_SCOPED:
        assert "namespace" not in doc["metadata"]
    else:
        assert doc["metadata"].get("namespace") == NAMESPACE


@pytest.mark.parametrize("entry", DOCUMENTS, ids=_doc_id)
def test_every_document_carries_the_name_and_part_of_labels(entry: tuple[str, Manifest]) -> None:
    _, doc = entry
    labels = doc["metadata"].get("labels", {})
    assert labels.get(NAME_LABEL)
    assert labels.get(PART_OF_LABEL) == "tsbatch"


def test_object_names_are_unique_per_kind() -> None:
    keys = [(doc["kind"], doc["metadata"]["name"]) for _, doc in DOCUMENTS]
    assert len(keys) == len(set(keys))


def test_namespace_enforces_the_restricted_pod_security_standard() -> None:
    namespace = _one("Namespace", NAMESPACE)
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


# -- pods -------------------------------------------------------------------------------


@pytest.mark.parametrize("doc", WORKLOADS, ids=_workload_id)
def test_pod_templates_carry_the_name_and_part_of_labels(doc: Manifest) -> None:
    labels = _pod_template(doc)["metadata"]["labels"]
    assert labels.get(NAME_LABEL) in {"torchserve", "tsbatch"}
    assert labels.get(PART_OF_LABEL) == "tsbatch"


@pytest.mark.parametrize("doc", WORKLOADS, ids=_workload_id)
def test_every_container_uses_one_of_the_two_images(doc: Manifest) -> None:
    images = {c["image"] for c in _containers(_pod_template(doc)["spec"])}
    assert images <= {TORCHSERVE_IMAGE, TSBATCH_IMAGE}


@pytest.mark.parametrize("doc", WORKLOADS, ids=_workload_id)
def test_every_container_requests_and_limits_cpu_and_memory(doc: Manifest) -> None:
    for container in _containers(_pod_template(doc)["spec"]):
        resources = container.get("resources", {})
        for bound in ("requests", "limits"):
            assert {"cpu", "memory"} <= set(resources.get(bound, {})), f"{container['name']}: {bound}"


@pytest.mark.parametrize("doc", WORKLOADS, ids=_workload_id)
def test_limits_are_not_below_requests(doc: Manifest) -> None:
    for container in _containers(_pod_template(doc)["spec"]):
        resources = container["resources"]
        for resource in ("cpu", "memory"):
            limit, request = resources["limits"][resource], resources["requests"][resource]
            assert _quantity(limit) >= _quantity(request), f"{container['name']}: {resource}"


@pytest.mark.parametrize("doc", WORKLOADS, ids=_workload_id)
def test_pods_run_as_non_root(doc: Manifest) -> None:
    context = _pod_template(doc)["spec"]["securityContext"]
    assert context["runAsNonRoot"] is True
    assert context["runAsUser"] > 0


@pytest.mark.parametrize("doc", WORKLOADS, ids=_workload_id)
def test_containers_drop_privileges(doc: Manifest) -> None:
    for container in _containers(_pod_template(doc)["spec"]):
        context = container["securityContext"]
        assert context["allowPrivilegeEscalation"] is False, container["name"]
        assert context["capabilities"]["drop"] == ["ALL"], container["name"]


@pytest.mark.parametrize("doc", WORKLOADS, ids=_workload_id)
def test_every_mounted_volume_is_declared(doc: Manifest) -> None:
    spec = _pod_template(doc)["spec"]
    declared = {volume["name"] for volume in spec["volumes"]}
    for container in _containers(spec):
        assert {m["name"] for m in container.get("volumeMounts", [])} <= declared, container["name"]


# -- TorchServe Deployment ---------------------------------------------------------------


def test_deployment_selector_is_a_subset_of_its_pod_labels() -> None:
    deployment = _torchserve()
    selector = deployment["spec"]["selector"]["matchLabels"]
    labels = _pod_template(deployment)["metadata"]["labels"]
    assert selector
    assert selector.items() <= labels.items()


def test_torchserve_runs_the_torchserve_image() -> None:
    assert _torchserve_container()["image"] == TORCHSERVE_IMAGE


def test_torchserve_container_exposes_inference_management_and_metrics_ports() -> None:
    ports = {p["name"]: p["containerPort"] for p in _torchserve_container()["ports"]}
    assert ports == TORCHSERVE_PORTS


def test_torchserve_container_has_readiness_and_liveness_probes() -> None:
    container = _torchserve_container()
    assert container.get("readinessProbe")
    assert container.get("livenessProbe")


def test_liveness_probe_needs_no_token() -> None:
    probe = _torchserve_container()["livenessProbe"]
    assert "httpGet" not in probe  # /ping answers 400 without the inference key
    assert "tcpSocket" in probe or "exec" in probe


def test_readiness_probe_runs_a_script_from_the_configmap() -> None:
    command = _torchserve_container()["readinessProbe"]["exec"]["command"]
    script = Path(command[-1]).name
    data = _one("ConfigMap", "torchserve-config")["data"]
    assert script in data
    assert "/ping" in data[script] and "key_file.json" in data[script]


@pytest.mark.parametrize("script", ["ping.py", "refresh_keys.py"])
def test_configmap_scripts_are_valid_python(script: str) -> None:
    source = _one("ConfigMap", "torchserve-config")["data"][script]
    compile(source, script, "exec")


def test_torchserve_is_started_with_the_mounted_config_files() -> None:
    container = _torchserve_container()
    start = " ".join(container["command"] + container["args"])
    mount = next(m for m in container["volumeMounts"] if m["name"] == "config")
    for name in ("config.properties", "log4j2.xml"):
        assert f"{mount['mountPath']}/{name}" in start
        assert name in _one("ConfigMap", "torchserve-config")["data"]


def test_model_store_volume_is_mounted_where_config_properties_points() -> None:
    spec = _pod_template(_torchserve())["spec"]
    path, volume = _mount_volume(spec, _torchserve_container(), _config()["model_store"])
    assert path == _config()["model_store"]
    assert volume["persistentVolumeClaim"]["claimName"] == "torchserve-model-store"


def test_key_file_is_written_to_a_persistent_volume() -> None:
    spec = _pod_template(_torchserve())["spec"]
    container = _torchserve_container()
    _, volume = _mount_volume(spec, container, container["workingDir"])
    assert volume["persistentVolumeClaim"]["claimName"] == "torchserve-keys"


def test_one_recreated_replica_while_token_auth_is_on() -> None:
    deployment = _torchserve()
    if _config()["disable_token_authorization"] == "false":
        assert deployment["spec"]["replicas"] == 1  # every server has its own keys
        assert deployment["spec"]["strategy"]["type"] == "Recreate"


# -- Service and PodDisruptionBudget ---------------------------------------------------------


def test_service_selector_matches_the_deployment_pod_labels() -> None:
    selector = _one("Service", "torchserve")["spec"]["selector"]
    labels = _pod_template(_torchserve())["metadata"]["labels"]
    assert selector
    assert selector.items() <= labels.items()


def test_service_is_cluster_ip_on_ports_8080_8081_8082() -> None:
    spec = _one("Service", "torchserve")["spec"]
    assert spec.get("type", "ClusterIP") == "ClusterIP"
    assert {p["port"] for p in spec["ports"]} == set(TORCHSERVE_PORTS.values())


def test_service_ports_target_the_container_port_of_the_same_number() -> None:
    container_ports = {p["name"]: p["containerPort"] for p in _torchserve_container()["ports"]}
    for port in _one("Service", "torchserve")["spec"]["ports"]:
        target = port["targetPort"]
        assert container_ports.get(target, target) == port["port"]


def test_pdb_selects_the_torchserve_pods_and_keeps_one() -> None:
    pdb = _one("PodDisruptionBudget")
    labels = _pod_template(_torchserve())["metadata"]["labels"]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert pdb["spec"]["minAvailable"] >= 1


# -- CronJob and Job -----------------------------------------------------------------------


def test_cronjob_schedule_has_five_fields() -> None:
    assert len(_one("CronJob")["spec"]["schedule"].split()) == 5


def test_cronjob_forbids_concurrent_runs() -> None:
    assert _one("CronJob")["spec"]["concurrencyPolicy"] == "Forbid"


@pytest.mark.parametrize("doc", BATCH_WORKLOADS, ids=_workload_id)
def test_batch_container_runs_tsbatch_classify(doc: Manifest) -> None:
    container = _classify_container(doc)
    assert container["image"] == TSBATCH_IMAGE
    assert container["command"] == ["tsbatch"]
    assert container["args"][0] == "classify"


@pytest.mark.parametrize("doc", BATCH_WORKLOADS, ids=_workload_id)
def test_batch_pods_do_not_restart_forever(doc: Manifest) -> None:
    assert _pod_template(doc)["spec"]["restartPolicy"] in {"Never", "OnFailure"}
    assert 0 < _job_spec(doc)["backoffLimit"] <= 10


@pytest.mark.parametrize("doc", BATCH_WORKLOADS, ids=_workload_id)
def test_batch_jobs_fail_at_once_on_failed_rows_and_bad_input(doc: Manifest) -> None:
    rules = _job_spec(doc)["podFailurePolicy"]["rules"]
    fail = [r["onExitCodes"] for r in rules if r["action"] == "FailJob" and "onExitCodes" in r]
    # The exit codes retrying cannot help with: failed rows, bad input, an OUTPUT that cannot be written.
    values = [EXIT_ROWS_FAILED, EXIT_BAD_INPUT, EXIT_CANNOT_WRITE]
    assert fail == [{"containerName": "tsbatch", "operator": "In", "values": values}]


@pytest.mark.parametrize("doc", BATCH_WORKLOADS, ids=_workload_id)
def test_batch_output_is_on_a_persistent_volume(doc: Manifest) -> None:
    container = _classify_container(doc)
    output = container["args"][2]
    _, volume = _mount_volume(_pod_template(doc)["spec"], container, output)
    assert "persistentVolumeClaim" in volume


@pytest.mark.parametrize("doc", BATCH_WORKLOADS, ids=_workload_id)
def test_batch_jobs_call_the_torchserve_service(doc: Manifest) -> None:
    env = _env(_classify_container(doc))
    service = _one("Service", "torchserve")["metadata"]
    for variable, port in (("TORCHSERVE_URL", 8080), ("TORCHSERVE_MANAGEMENT_URL", 8081)):
        url = urlsplit(env[variable])
        assert url.hostname is not None
        assert url.hostname.startswith(f"{service['name']}.{service['namespace']}.svc")
        assert url.port == port


@pytest.mark.parametrize("doc", BATCH_WORKLOADS, ids=_workload_id)
def test_batch_jobs_read_the_key_file_from_torchserves_key_volume(doc: Manifest) -> None:
    container = _classify_container(doc)
    key_file = _env(container)["TORCHSERVE_KEY_FILE"]
    _, volume = _mount_volume(_pod_template(doc)["spec"], container, key_file)
    assert volume["persistentVolumeClaim"]["claimName"] == "torchserve-keys"
    assert key_file.endswith("/key_file.json")


@pytest.mark.parametrize("doc", BATCH_WORKLOADS, ids=_workload_id)
def test_batch_jobs_run_as_the_user_that_owns_the_key_file(doc: Manifest) -> None:
    torchserve_user = _pod_template(_torchserve())["spec"]["securityContext"]["runAsUser"]
    assert _pod_template(doc)["spec"]["securityContext"]["runAsUser"] == torchserve_user


def test_cronjob_pushes_to_a_pushgateway_and_serves_metrics() -> None:
    args = _classify_container(_one("CronJob"))["args"]
    pushgateway = _option(args, "--pushgateway")
    assert pushgateway is not None and urlsplit(pushgateway).scheme in {"http", "https"}
    assert _option(args, "--metrics-port") is not None


def _metrics_container_port(doc: Manifest) -> int:
    """The container port named ``metrics`` of the job's classify container."""
    ports = [p for p in _classify_container(doc).get("ports", []) if p["name"] == "metrics"]
    assert len(ports) == 1, "the tsbatch container declares no single port named metrics"
    assert ports[0].get("protocol", "TCP") == "TCP"
    port: int = ports[0]["containerPort"]
    return port


@pytest.mark.parametrize("doc", BATCH_WORKLOADS, ids=_workload_id)
def test_batch_jobs_serve_metrics_on_all_addresses(doc: Manifest) -> None:
    # The default, 127.0.0.1, is not reachable from Prometheus outside the pod.
    assert _option(_classify_container(doc)["args"], "--metrics-address") == "0.0.0.0"


@pytest.mark.parametrize("doc", BATCH_WORKLOADS, ids=_workload_id)
def test_batch_jobs_metrics_port_is_the_declared_metrics_container_port(doc: Manifest) -> None:
    template = _pod_template(doc)
    metrics_port = _metrics_container_port(doc)
    assert _option(_classify_container(doc)["args"], "--metrics-port") == str(metrics_port)
    assert template["metadata"]["annotations"]["prometheus.io/port"] == str(metrics_port)
    # No other container of the pod claims the port (the job serves it itself).
    others = [c for c in _containers(template["spec"]) if c["name"] != "tsbatch"]
    assert all(
        p["containerPort"] != metrics_port and p.get("name") != "metrics"
        for c in others
        for p in c.get("ports", [])
    )


# -- NetworkPolicy ------------------------------------------------------------------------


def test_torchserve_network_policy_selects_the_torchserve_pods() -> None:
    selector = _network_policy_for("torchserve")["spec"]["podSelector"]["matchLabels"]
    assert selector.items() <= _pod_template(_torchserve())["metadata"]["labels"].items()


@pytest.mark.parametrize("policy", _objects("NetworkPolicy"), ids=lambda p: p["metadata"]["name"])
def test_network_policies_admit_only_tsbatch_or_prometheus_pods(policy: Manifest) -> None:
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    for rule in policy["spec"]["ingress"]:
        assert rule.get("ports"), "a rule without ports admits every port"
        for peer in rule["from"]:
            assert "ipBlock" not in peer
            assert _peer_name(peer) in {"tsbatch", "prometheus"}
            assert peer["podSelector"]["matchLabels"] == {NAME_LABEL: _peer_name(peer)}
            if "namespaceSelector" in peer:
                assert _peer_name(peer) == "prometheus"


def _ports_for(policy: Manifest, peer_name: str) -> set[int]:
    return {
        port["port"]
        for rule in policy["spec"]["ingress"]
        if any(_peer_name(peer) == peer_name for peer in rule["from"])
        for port in rule["ports"]
    }


def test_tsbatch_pods_reach_only_torchserve_inference_and_management() -> None:
    policy = _network_policy_for("torchserve")
    assert _ports_for(policy, "tsbatch") == {TORCHSERVE_PORTS["inference"], TORCHSERVE_PORTS["management"]}


def test_prometheus_reaches_only_torchserve_metrics_port() -> None:
    assert _ports_for(_network_policy_for("torchserve"), "prometheus") == {TORCHSERVE_PORTS["metrics"]}


def test_tsbatch_network_policy_selects_the_job_pods() -> None:
    selector = _network_policy_for("tsbatch")["spec"]["podSelector"]["matchLabels"]
    for doc in BATCH_WORKLOADS:
        assert selector.items() <= _pod_template(doc)["metadata"]["labels"].items(), _workload_id(doc)


@pytest.mark.parametrize("doc", BATCH_WORKLOADS, ids=_workload_id)
def test_only_prometheus_reaches_the_job_metrics_port(doc: Manifest) -> None:
    policy = _network_policy_for("tsbatch")
    metrics_port = _metrics_container_port(doc)
    assert _option(_classify_container(doc)["args"], "--metrics-port") == str(metrics_port)
    assert _ports_for(policy, "prometheus") == {metrics_port}
    assert _ports_for(policy, "tsbatch") == set()
    protocols = {port.get("protocol", "TCP") for rule in policy["spec"]["ingress"] for port in rule["ports"]}
    assert protocols == {"TCP"}


# -- TorchServe configuration ------------------------------------------------------------


def test_config_properties_turns_on_prometheus_metrics() -> None:
    assert _config()["metrics_mode"] == "prometheus"


def test_config_properties_listens_on_the_three_addresses() -> None:
    config = _config()
    assert config["inference_address"] == "http://0.0.0.0:8080"
    assert config["management_address"] == "http://0.0.0.0:8081"
    assert config["metrics_address"] == "http://0.0.0.0:8082"


def test_config_properties_sets_queue_size_model_store_and_models_to_load() -> None:
    config = _config()
    assert int(config["job_queue_size"]) > 0
    assert config["model_store"].startswith("/")
    assert config["load_models"].endswith(".mar")


def test_model_config_batches_on_the_server_with_the_loaded_archive() -> None:
    config = _config()
    versions = [v for model in json.loads(config["models"]).values() for v in model.values()]
    assert {v["marName"] for v in versions} == {config["load_models"]}
    assert all(v["batchSize"] > 1 and v["maxBatchDelay"] >= 0 for v in versions)


def test_log4j2_config_turns_off_access_and_metrics_logs() -> None:
    root = ET.fromstring(_one("ConfigMap", "torchserve-config")["data"]["log4j2.xml"])
    levels = {logger.get("name"): logger.get("level") for logger in root.iter("Logger")}
    assert levels["ACCESS_LOG"] == "off"
    assert levels["TS_METRICS"] == "off"
    assert levels["MODEL_METRICS"] == "off"
    root_logger = root.find("./Loggers/Root")
    assert root_logger is not None and root_logger.get("level") in {"warn", "error"}


# -- Secrets -----------------------------------------------------------------------------


@pytest.mark.parametrize("secret", _objects("Secret"), ids=lambda s: s["metadata"]["name"])
def test_secret_values_are_marked_placeholders(secret: Manifest) -> None:
    assert "data" not in secret  # base64 would hide what the value is
    assert secret["stringData"]
    assert all(str(value).startswith("PLACEHOLDER") for value in secret["stringData"].values())


def test_tls_secret_holds_a_certificate_and_a_key() -> None:
    secret = _one("Secret", "torchserve-tls")
    assert secret["type"] == "kubernetes.io/tls"
    assert set(secret["stringData"]) == {"tls.crt", "tls.key"}


def test_deployment_mounts_the_tls_secret_without_requiring_it() -> None:
    volumes = _pod_template(_torchserve())["spec"]["volumes"]
    tls = next(
        v["secret"] for v in volumes if "secret" in v and v["secret"]["secretName"] == "torchserve-tls"
    )
    assert tls["optional"] is True


# -- the guide ---------------------------------------------------------------------------


def _guide_headings() -> list[str]:
    lines = GUIDE.read_text().splitlines()
    in_code = False
    headings = []
    for line in lines:
        if line.startswith("```"):
            in_code = not in_code
        elif not in_code and re.match(r"#{1,6} ", line):
            headings.append(line.rstrip())
    return headings


@pytest.mark.parametrize("heading", ALERT_HEADINGS)
def test_guide_has_a_troubleshooting_section_per_alert(heading: str) -> None:
    assert heading in _guide_headings()


def test_guide_heading_anchors_are_unique() -> None:
    anchors = [_github_anchor(h) for h in _guide_headings()]
    assert len(anchors) == len(set(anchors))


def test_alert_runbook_links_resolve_to_guide_anchors() -> None:
    anchors = {_github_anchor(h) for h in _guide_headings()}
    rules = [rule for group in yaml.safe_load(ALERTS.read_text())["groups"] for rule in group["rules"]]
    for rule in rules:
        url = rule["annotations"]["runbook_url"]
        assert url.startswith("PRODUCTION_DEPLOYMENT.md#"), rule["alert"]
        assert url.split("#", 1)[1] in anchors, rule["alert"]


def test_guide_mentions_every_manifest_file() -> None:
    text = GUIDE.read_text()
    assert [name for name in sorted(EXPECTED_FILES) if name not in text] == []
