"""The deployment files in serving/deploy/: models.config as shipped starts TF Serving,
every Kubernetes manifest validates against the Kubernetes API schemas, and probes,
scaling, disruption budget, memory and images hold what the comments say. (The local
server's readiness contract: tests/serving/test_deploy.py; the pin script on real images:
tests/image/test_deploy.py.)"""
import os
import re
import shlex
import shutil
import subprocess

import kubernetes_validate
import pytest
import yaml
from google.protobuf import text_format
from kubernetes.utils import parse_quantity
from tensorflow_serving.config import model_server_config_pb2

from cli.main import main
from serving.labels import versions_on_disk
from serving.model_store import read_model_config
from serving.server import parse_flags
from tests.support import pod_security
from tests.support.deploy_files import (DEPLOY, DOCUMENTS, IMAGE_LINE, KUBERNETES, MODELS_CONFIG,
                                        SERVER, SERVER_CONTAINER, SERVER_FLAGS, SERVER_POD,
                                        _by_kind, _config, _images, _pin, _probe_script)
from tests.support.paths import REPO

# Oldest and newest Kubernetes API that kubernetes-validate 1.37 ships schemas for.
KUBERNETES_VERSIONS = ["1.25", "1.37"]

# TF Serving's Deployment and what goes with it; the project's own server apart.
MANIFESTS = _by_kind("tf-serving.yaml", "tf-serving-scaling.yaml", "models-pvc.yaml",
                     "kserve-inferenceservice.yaml")
DEPLOYMENT = MANIFESTS["Deployment"]
POD = DEPLOYMENT["spec"]["template"]
CONTAINERS = {c["name"]: c for c in POD["spec"]["containers"]}
CONTAINER, PROXY_CONTAINER = CONTAINERS["tf-serving"], CONTAINERS["proxy"]  # HAProxy before it
TF_SERVING_IMAGE = CONTAINER["image"]


# -- models.config ---------------------------------------------------------------------
def test_models_config_has_no_label_on_a_version_that_is_not_on_disk():
    model, = _config(MODELS_CONFIG).model_config_list.config
    assert (model.name, model.base_path) == ("bert_classifier", "/models/bert_classifier")
    assert model.model_version_policy.latest.num_versions == 2
    # Nothing is on disk before the first push, so no label may be shipped (TF Serving
    # refuses to start with a label on a version it has not loaded).
    assert set(model.version_labels.values()) <= set(versions_on_disk(model.base_path))
    assert dict(model.version_labels) == {}
    spec, = read_model_config(MODELS_CONFIG)  # the local server reads it the same way
    assert (spec.policy, spec.num_versions, spec.labels) == ("latest", 2, {})
    assert spec.wanted([1764012345, 1764099999, 1763000000]) == [1764012345, 1764099999]


def test_the_labels_command_in_models_config_does_what_its_comment_says(tmp_path,
                                                                        saved_model):
    """The header's example command, run on a copy, adds the labels the header shows."""
    with open(MODELS_CONFIG) as f:
        header = "".join(line[1:] for line in f if line.startswith("#"))
    example = re.search(r"bert-pipeline (labels .*?[^\\])\n", header.replace("\\\n", " "))
    argv = shlex.split(example.group(1))
    shown = model_server_config_pb2.ModelConfig()
    text_format.Parse(" ".join(re.findall(r"version_labels \{.*?\}", header)), shown)
    base = tmp_path / "bert_classifier"
    for version in shown.version_labels.values():
        shutil.copytree(saved_model, base / str(version))
    config = tmp_path / "models.config"
    shutil.copy(MODELS_CONFIG, config)
    argv[argv.index("--config") + 1] = str(config)
    argv[argv.index("--base_path") + 1] = str(base)
    assert main(argv) == 0
    model, = _config(config).model_config_list.config
    assert dict(model.version_labels) == dict(shown.version_labels) != {}


# -- Kubernetes ------------------------------------------------------------------------
@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_manifest_validates_against_the_kubernetes_api(version):
    assert {"Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget",
            "PersistentVolumeClaim", "InferenceService"} <= set(MANIFESTS)
    for name, docs in DOCUMENTS.items():
        for doc in docs:
            if doc["kind"] in KSERVE_KINDS:  # KServe CRDs: no schema in the validator
                with pytest.raises(kubernetes_validate.SchemaNotFoundError):
                    kubernetes_validate.validate(doc, version, strict=True)
                doc = KSERVE_KINDS[doc["kind"]](doc)  # what can be validated: its pod
            assert kubernetes_validate.validate(doc, version, strict=True) == version, \
                (name, doc["kind"])


def _pods(doc):
    """(name, annotations, pod spec) of every pod a manifest makes; KServe's as KServe
    builds them (see _kserve_predictor_as_pod)."""
    if doc["kind"] == "ServingRuntime":  # no pod of its own: part of the predictor's
        return []
    if doc["kind"] == "InferenceService":
        return [(f"InferenceService/{doc['metadata']['name']} predictor", {},
                 _kserve_predictor_as_pod(doc)["spec"])]
    return [(pod, metadata.get("annotations"), spec)
            for pod, metadata, spec in pod_security.pods(doc)]


@pytest.mark.parametrize("name", sorted(DOCUMENTS))
def test_every_pod_passes_the_restricted_pod_security_standard(name):
    """What a namespace labelled pod-security.kubernetes.io/enforce=restricted admits;
    plus the project's own rules: a read-only root file system with an emptyDir for
    scratch, and no service-account token for a server that never calls the API."""
    found = {}
    for doc in DOCUMENTS[name]:
        for pod, annotations, spec in _pods(doc):
            problems = pod_security.violations(spec, "restricted", annotations)
            if spec.get("automountServiceAccountToken") is not False:
                problems.append("automountServiceAccountToken must be false")
            for where, container in pod_security.containers(spec):
                if not (container.get("securityContext") or {}).get(
                        "readOnlyRootFilesystem"):
                    problems.append(f"{where}: readOnlyRootFilesystem must be true")
            if problems:
                found[pod] = problems
    assert found == {}


def test_the_validator_rejects_a_misspelt_field():
    """Strict validation catches what kubectl would reject (so the test above can fail)."""
    broken = yaml.safe_load(yaml.safe_dump(DEPLOYMENT))
    broken["spec"]["template"]["spec"]["containers"][0]["readinessProbes"] = {}
    with pytest.raises(kubernetes_validate.ValidationError, match="readinessProbes"):
        kubernetes_validate.validate(broken, KUBERNETES_VERSIONS[-1], strict=True)


def _port(container, port):
    named = {p["name"]: p["containerPort"] for p in container["ports"]}
    return named.get(port, port)


def test_readiness_waits_for_a_loaded_version_and_liveness_for_the_first_load():
    model, = read_model_config(MODELS_CONFIG)
    env = _proxy_env()
    # Readiness: the metadata path through the proxy's probe port (HAProxy forwards only
    # that path there, without a token); startup: the same path on TF Serving's port.
    ready = PROXY_CONTAINER["readinessProbe"]["httpGet"]
    assert ready["path"] == f"/v1/models/{model.name}/metadata"
    assert f":{_port(PROXY_CONTAINER, ready['port'])}" == env["HEALTH_BIND"]
    assert "readinessProbe" not in CONTAINER
    flags = parse_flags(CONTAINER["args"])  # TF Serving's flags, as the local server knows
    startup = CONTAINER["startupProbe"]
    assert startup["httpGet"]["path"] == ready["path"]
    assert _port(CONTAINER, startup["httpGet"]["port"]) == flags.rest_api_port
    assert env["TF_SERVING_REST"] == f"127.0.0.1:{flags.rest_api_port}"
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 300
    # Liveness does not depend on a model being loaded (a failed new version must not
    # restart pods that still serve the old one), nor on the proxy.
    assert _port(CONTAINER, CONTAINER["livenessProbe"]["tcpSocket"]["port"]) == flags.port
    assert env["TF_SERVING_GRPC"] == f"127.0.0.1:{flags.port}"
    assert CONTAINER["image"].startswith("tensorflow/serving:")
    assert CONTAINER["command"] == ["/bin/sh", "/proxy/run-tf-serving.sh",
                                    "/usr/bin/tensorflow_model_server"]
    assert flags.model_config_file_poll_wait_seconds > 0  # label moves apply live
    mounts = {m["name"]: m["mountPath"] for m in CONTAINER["volumeMounts"]}
    assert flags.model_config_file.startswith(mounts["config"] + "/")
    assert model.base_path.startswith(mounts["models"] + "/")
    volumes = {v["name"]: v for v in POD["spec"]["volumes"]}
    claim = MANIFESTS["PersistentVolumeClaim"]
    assert volumes["models"]["persistentVolumeClaim"]["claimName"] == \
        claim["metadata"]["name"]
    assert "ReadWriteMany" in claim["spec"]["accessModes"]
    assert volumes["config"]["configMap"]["name"] == "bert-classifier-serving-config"
    assert DEPLOYMENT["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0


def test_termination_grace_period_and_prestop_match_the_proxys_drain():
    """Stopping a pod: the proxy's preStop sleeps while the Service drops the pod (at
    least as long as the readiness probe takes to fail), then SIGTERM soft-stops HAProxy:
    requests in flight get hard-stop-after (at least TF Serving's REST deadline). TF
    Serving's wrapper waits for the proxy's marker at most DRAIN_WAIT_SECONDS (all of
    that and 5 s to spare), then stops TF Serving; Kubernetes kills only after the grace
    period (counted from preStop), which leaves TF Serving time to exit."""
    flags = parse_flags(CONTAINER["args"])
    command = PROXY_CONTAINER["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep" and "lifecycle" not in CONTAINER
    pre_stop = float(command[1])
    ready = PROXY_CONTAINER["readinessProbe"]
    assert pre_stop >= ready["periodSeconds"] * ready["failureThreshold"]
    hard_stop = float(re.search(r"^\s*hard-stop-after (\d+)s$", _haproxy_cfg(), re.M)[1])
    assert hard_stop >= flags.rest_api_timeout_in_ms / 1000
    env = {e["name"]: e["value"] for e in CONTAINER["env"]}
    wait = float(env["DRAIN_WAIT_SECONDS"])
    assert wait >= pre_stop + hard_stop + 5
    grace = POD["spec"]["terminationGracePeriodSeconds"]
    assert grace >= wait + 10
    manifest = open(os.path.join(KUBERNETES, "tf-serving.yaml")).read()
    stated = re.search(r"(\d+) >= (\d+) = (\d+) \+ (\d+) \+ 5, checked", manifest)
    assert [float(n) for n in stated.groups()] == [grace, wait, pre_stop, hard_stop]


def _haproxy_cfg():
    with open(os.path.join(DEPLOY, "proxy", "haproxy.cfg")) as f:
        return f.read()


def _proxy_env():
    return {e["name"]: e["value"] for e in PROXY_CONTAINER["env"]}


def test_the_proxy_reads_its_config_tls_and_tokens_from_the_mounted_volumes():
    """Every path haproxy.cfg and the wrappers read is on the volume it should be: the
    proxy ConfigMap, the TLS Secret's tls.crt (key next to it as <crt>.key, what HAProxy
    reads), the token Secret's predict-tokens, one emptyDir for the drain marker."""
    env = _proxy_env()
    used = set(re.findall(r"\$\{(\w+)\}", _haproxy_cfg()))
    assert used == set(env) - {"HAPROXY", "HAPROXY_CONFIG", "DRAIN_MARKER"}
    assert (env["GRPC_BIND"], env["REST_BIND"]) == (":8500", ":8501")
    assert {p["containerPort"] for p in PROXY_CONTAINER["ports"]} == {
        int(env[bind].split(":")[1]) for bind in ("GRPC_BIND", "REST_BIND", "HEALTH_BIND")}
    assert PROXY_CONTAINER["image"].startswith("haproxy:")
    assert PROXY_CONTAINER["command"] == ["/bin/sh", "/proxy/run-haproxy.sh"]
    for path, source, key in [
            (env["HAPROXY_CONFIG"], "bert-classifier-proxy", "haproxy.cfg"),
            ("/proxy/run-haproxy.sh", "bert-classifier-proxy", "run-haproxy.sh"),
            (env["TLS_CERT"], "bert-classifier-tls", "tls.crt"),
            (env["TLS_CERT"] + ".key", "bert-classifier-tls", "tls.key"),
            (env["TOKENS_FILE"], "bert-classifier-tokens", "predict-tokens")]:
        volume, mount, mounted_key = _mounted(path, PROXY_CONTAINER, POD)
        named = volume.get("secret", {}).get("secretName") or volume["configMap"]["name"]
        assert (named, mounted_key) == (source, key), path
        assert mount["readOnly"]
        if "secret" in volume:
            assert mount["mountPath"].startswith(SECRET_MOUNT)
            assert volume["secret"]["defaultMode"] & 0o007 == 0  # not world-readable
        assert os.path.exists(os.path.join(DEPLOY, "proxy", key)) or "secret" in volume
    wrapper, = [a for a in CONTAINER["command"] if a.endswith(".sh")]
    assert _mounted(wrapper, CONTAINER, POD)[0]["configMap"]["name"] == \
        "bert-classifier-proxy"
    marker = env["DRAIN_MARKER"]
    assert {e["name"]: e["value"] for e in CONTAINER["env"]}["DRAIN_MARKER"] == marker
    shared = _mounted(marker, PROXY_CONTAINER, POD)[0]
    assert "emptyDir" in shared and _mounted(marker, CONTAINER, POD)[0] is shared


def test_service_and_prometheus_annotations():
    from serving.metrics import read_monitoring_config

    service = MANIFESTS["Service"]
    assert service["spec"]["selector"] == DEPLOYMENT["spec"]["selector"]["matchLabels"]
    assert {p["port"]: _port(PROXY_CONTAINER, p["targetPort"])
            for p in service["spec"]["ports"]} == {8500: 8500, 8501: 8501}  # HAProxy's
    annotations = POD["metadata"]["annotations"]
    assert annotations["prometheus.io/path"] == read_monitoring_config(
        os.path.join(DEPLOY, "monitoring.config"))
    assert annotations["prometheus.io/port"] == "8501"
    assert annotations["prometheus.io/scheme"] == "https"  # through the proxy


def test_autoscaler_and_disruption_budget_select_the_deployments_pods():
    hpa, pdb = MANIFESTS["HorizontalPodAutoscaler"], MANIFESTS["PodDisruptionBudget"]
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["apiVersion"], target["kind"], target["name"]) == (
        DEPLOYMENT["apiVersion"], "Deployment", DEPLOYMENT["metadata"]["name"])
    assert "replicas" not in DEPLOYMENT["spec"]  # the autoscaler owns the count
    metric, = hpa["spec"]["metrics"]
    assert metric["resource"]["name"] == "cpu"
    assert "cpu" in CONTAINER["resources"]["requests"]  # utilization is of the request
    selector = pdb["spec"]["selector"]["matchLabels"]
    assert selector == DEPLOYMENT["spec"]["selector"]["matchLabels"]
    assert selector.items() <= POD["metadata"]["labels"].items()
    # A drain takes at most one pod, and there are always at least two.
    assert pdb["spec"]["maxUnavailable"] == 1 < hpa["spec"]["minReplicas"] <= \
        hpa["spec"]["maxReplicas"]


def test_memory_holds_two_versions_during_a_swap():
    """The sizing the Deployment's comment and annotations document."""
    measured = DEPLOYMENT["metadata"]["annotations"]
    one = parse_quantity(measured["bert-pipeline/memory-one-version"])
    two = parse_quantity(measured["bert-pipeline/memory-two-versions"])
    assert one < two < 2 * one
    resources = CONTAINER["resources"]
    request = parse_quantity(resources["requests"]["memory"])
    limit = parse_quantity(resources["limits"]["memory"])
    assert request >= two  # a swap never exceeds the request
    assert limit >= 2 * request >= 2 * one
    kserve = MANIFESTS["InferenceService"]["spec"]["predictor"]["model"]["resources"]
    assert kserve == resources


# KServe's own fields: of a component (the rest of it is the pod's spec) and of a model
# (the rest of it is the container's).
KSERVE_COMPONENT_FIELDS = {"minReplicas", "maxReplicas", "scaleMetric", "scaleTarget",
                           "containerConcurrency", "timeout", "canaryTrafficPercent",
                           "logger", "batcher", "annotations", "labels", "model"}
KSERVE_MODEL_FIELDS = {"modelFormat", "runtime", "runtimeVersion", "storageUri",
                       "protocolVersion", "storage"}


def _as_pod(name, spec):
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec}


def _serving_runtime_as_pod(runtime):
    """A ServingRuntime's containers and volumes are a pod's."""
    return _as_pod(runtime["metadata"]["name"], {
        "containers": runtime["spec"]["containers"],
        **({"volumes": runtime["spec"]["volumes"]} if "volumes" in runtime["spec"] else {})})


def _kserve_predictor_as_pod(inference):
    """The predictor's pod as KServe builds it: the predictor's own pod fields, and the
    runtime's container with the model's container fields over it (KServe merges maps key
    by key; replacing them whole here can only lose settings, never add one)."""
    predictor = inference["spec"]["predictor"]
    model = predictor["model"]
    runtime = next(doc for doc in DOCUMENTS["kserve-inferenceservice.yaml"]
                   if doc["kind"] == "ServingRuntime"
                   and doc["metadata"]["name"] == model["runtime"])
    container = dict(runtime["spec"]["containers"][0], **{
        field: value for field, value in model.items() if field not in KSERVE_MODEL_FIELDS})
    spec = {field: value for field, value in predictor.items()
            if field not in KSERVE_COMPONENT_FIELDS}
    spec["containers"] = [container]
    spec["volumes"] = runtime["spec"].get("volumes", []) + predictor.get("volumes", [])
    return _as_pod(inference["metadata"]["name"], spec)


KSERVE_KINDS = {"InferenceService": _kserve_predictor_as_pod,
                "ServingRuntime": _serving_runtime_as_pod}


def test_kserve_reads_the_pushed_folder_from_the_claim():
    inference = MANIFESTS["InferenceService"]
    assert inference["apiVersion"] == "serving.kserve.io/v1beta1"
    predictor = inference["spec"]["predictor"]
    model = predictor["model"]
    assert model["modelFormat"]["name"] == "tensorflow"
    # Its own runtime, the same TF Serving build as the Deployment; no runtimeVersion
    # (KServe would write it over the image's last `:...`, a digest's included).
    runtime = MANIFESTS["ServingRuntime"]
    assert model["runtime"] == runtime["metadata"]["name"] and "runtimeVersion" not in model
    assert {"name": "tensorflow", "version": "2"} in runtime["spec"]["supportedModelFormats"]
    served, = runtime["spec"]["containers"]
    assert served["image"] == TF_SERVING_IMAGE
    flags = parse_flags(served["args"])
    assert flags.model_base_path == "/mnt/models"  # where KServe mounts storageUri
    spec, = read_model_config(MODELS_CONFIG)
    claim = MANIFESTS["PersistentVolumeClaim"]["metadata"]["name"]
    # pvc:// is mounted directly, so TF Serving inside sees every new pushed version.
    assert model["storageUri"] == f"pvc://{claim}/{spec.name}"
    # KServe admits only concurrency or rps in Serverless mode (validateKPAMetrics):
    # "cpu" was refused at apply ("[cpu] is not a supported metric").
    assert predictor["scaleMetric"] in ("concurrency", "rps") and predictor["minReplicas"] >= 2
    assert "bert-pipeline/pushed-version" in predictor["annotations"]  # bucket roll-outs


SECRET_MOUNT = "/secrets/"


def _mounted(path, container=SERVER_CONTAINER, pod=SERVER_POD):
    """(volume, mount, file key or None) of the file ``path`` in the container."""
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    for mount in container["volumeMounts"]:
        if path.startswith(mount["mountPath"] + "/"):
            volume = volumes[mount["name"]]
            relative = path[len(mount["mountPath"]) + 1:]
            items = {i["path"]: i["key"] for i in
                     (volume.get("secret") or volume.get("configMap") or {}).get("items", [])}
            return volume, mount, items.get(relative, relative)
    raise AssertionError(f"{path} is on no volume")


def test_the_server_runs_with_tls_and_tokens_from_secrets():
    assert SERVER_CONTAINER["command"] == ["bert-pipeline", "serve"]
    assert SERVER_CONTAINER["image"].split("@")[0].rsplit(":", 1)[0].endswith(
        "/bert-text-pipeline")
    assert SERVER_POD["spec"]["securityContext"]["runAsUser"] == 1000  # the image's user
    flags = SERVER_FLAGS
    assert flags.host == "0.0.0.0" and (flags.port, flags.rest_api_port) == (8500, 8501)
    for path, secret, key in [
            (flags.ssl_config_file, "bert-classifier-tls", "ssl_config.txt"),
            (flags.auth_token_file, "bert-classifier-tokens", "predict-tokens"),
            (flags.feedback_token_file, "bert-classifier-tokens", "feedback-tokens")]:
        volume, mount, mounted_key = _mounted(path)
        assert (volume["secret"]["secretName"], mounted_key) == (secret, key), path
        assert mount["readOnly"] and mount["mountPath"].startswith(SECRET_MOUNT)
        assert volume["secret"]["defaultMode"] & 0o007 == 0  # not world-readable
    # A cap far below the default (64 MiB): texts are small, and bodies cost memory.
    assert 0 < flags.max_request_bytes <= 4 * 2**20 < parse_flags(
        ["--model_name=m", "--model_base_path=/m"]).max_request_bytes
    # Same models and config as TF Serving's Deployment.
    config, _, key = _mounted(flags.model_config_file)
    assert config["configMap"]["name"] == "bert-classifier-serving-config"
    assert key == "models.config"
    model, = read_model_config(MODELS_CONFIG)
    models, _, _ = _mounted(model.base_path)
    assert models["persistentVolumeClaim"]["claimName"] == \
        MANIFESTS["PersistentVolumeClaim"]["metadata"]["name"]
    assert _mounted(flags.monitoring_config_file)[0] == config
    # Feedback: its own claim, one writer (one replica, never two pods at once).
    feedback, mount, _ = _mounted(flags.feedback_dir + "/predictions.jsonl")
    assert not mount.get("readOnly")
    assert feedback["persistentVolumeClaim"]["claimName"] == \
        SERVER["PersistentVolumeClaim"]["metadata"]["name"]
    deployment = SERVER["Deployment"]["spec"]
    assert deployment["replicas"] == 1 and deployment["strategy"]["type"] == "Recreate"


def test_the_servers_drain_fits_its_grace_period():
    """SIGTERM: readiness fails at once, ports open --drain_delay_seconds, then requests
    in flight get --drain_grace_seconds (at least the REST deadline); Kubernetes kills
    only after all of it and 5 s more. No preStop: the server's drain delay is the wait."""
    flags = SERVER_FLAGS
    assert "lifecycle" not in SERVER_CONTAINER
    ready = SERVER_CONTAINER["readinessProbe"]
    assert flags.drain_delay_seconds >= ready["periodSeconds"] * ready["failureThreshold"]
    assert flags.drain_grace_seconds >= flags.rest_api_timeout_in_ms / 1000
    grace = SERVER_POD["spec"]["terminationGracePeriodSeconds"]
    # 5 s to spare: the server's exit after the drain, and the SIGTERM's delivery.
    assert grace >= flags.drain_delay_seconds + flags.drain_grace_seconds + 5
    manifest = open(os.path.join(KUBERNETES, "bert-pipeline-server.yaml")).read()
    stated = re.search(r"(\d+) >= (\d+) \+ (\d+) \+ 5 \(to spare\)", manifest)
    assert [float(n) for n in stated.groups()] == [
        grace, flags.drain_delay_seconds, flags.drain_grace_seconds]


def test_the_servers_probes_and_service():
    flags = SERVER_FLAGS
    assert SERVER_CONTAINER["startupProbe"]["exec"] == SERVER_CONTAINER["readinessProbe"][
        "exec"]
    startup = SERVER_CONTAINER["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 300
    script = _probe_script()
    model, = read_model_config(MODELS_CONFIG)
    assert f'"https://127.0.0.1:{flags.rest_api_port}/v1/models/{model.name}/metadata"' \
        in script
    # The token file's one reader (serving.auth: `TOKEN [CALLER]`, comments), from the
    # project the image holds; the probe sends its tokens until one is accepted.
    assert "from serving.auth import read_token_file" in script
    assert f'read_token_file("{flags.auth_token_file}"' in script
    tls, _, key = _mounted(re.search(r'cafile="([^"]+)"', script).group(1))
    assert (tls["secret"]["secretName"], key) == ("bert-classifier-tls", "tls.crt")
    liveness = SERVER_CONTAINER["livenessProbe"]["tcpSocket"]
    assert _port(SERVER_CONTAINER, liveness["port"]) == flags.port
    service = SERVER["Service"]
    assert service["spec"]["selector"] == SERVER["Deployment"]["spec"]["selector"][
        "matchLabels"]
    assert {p["port"]: _port(SERVER_CONTAINER, p["targetPort"])
            for p in service["spec"]["ports"]} == {8500: flags.port,
                                                   8501: flags.rest_api_port}
    # Metrics need the token: no annotation-based scraping, which can send none.
    assert not any(a.startswith("prometheus.io/")
                   for a in SERVER_POD["metadata"].get("annotations", {}))


def test_the_ssl_config_command_in_the_comment_makes_what_the_server_reads(tmp_path):
    from serving.tls import load_ssl_config
    from tests.support.certificates import make_pki

    manifest = open(os.path.join(KUBERNETES, "bert-pipeline-server.yaml")).read()
    command = re.search(r"#\s+(python3 -c '.*?' > ssl_config\.txt)", manifest, re.S).group(1)
    command = re.sub(r"\n#\s+", "\n", command)
    certs = make_pki(tmp_path)
    shutil.copy(certs.server_key, tmp_path / "tls.key")
    shutil.copy(certs.server_cert, tmp_path / "tls.crt")
    subprocess.run(["sh", "-c", command], cwd=tmp_path, check=True)
    tls = load_ssl_config(str(tmp_path / "ssl_config.txt"))
    assert tls.cert == (tmp_path / "tls.crt").read_bytes()
    assert tls.key == (tmp_path / "tls.key").read_bytes()


# -- NetworkPolicy ---------------------------------------------------------------------
CLIENT_LABEL = {"bert-classifier/client": "true"}


def test_network_policy_admits_only_client_namespaces_and_the_scraper():
    policy, = DOCUMENTS["networkpolicy.yaml"]
    spec = policy["spec"]
    assert spec["policyTypes"] == ["Ingress"]  # selected pods: any other ingress dropped
    selector, = spec["podSelector"]["matchExpressions"]
    assert "matchLabels" not in spec["podSelector"]
    assert (selector["key"], selector["operator"]) == ("app", "In")
    serving_pods = {MANIFESTS["Deployment"]["spec"]["template"]["metadata"]["labels"]["app"],
                    SERVER_POD["metadata"]["labels"]["app"]}
    assert set(selector["values"]) == serving_pods
    clients, scraper = spec["ingress"]
    peer, = clients["from"]
    assert peer == {"namespaceSelector": {"matchLabels": CLIENT_LABEL}}
    assert {(p["protocol"], p["port"]) for p in clients["ports"]} == {("TCP", 8500),
                                                                      ("TCP", 8501)}
    peer, = scraper["from"]
    assert peer == {"namespaceSelector": {"matchLabels": {
        "kubernetes.io/metadata.name": "monitoring"}}}
    assert scraper["ports"] == [{"protocol": "TCP", "port": 8501}]  # metrics: REST only
    # The ports admitted are the Services' (clients connect to nothing else).
    for service in (MANIFESTS["Service"], SERVER["Service"]):
        assert {p["port"] for p in service["spec"]["ports"]} == {8500, 8501}
    text = open(os.path.join(KUBERNETES, "networkpolicy.yaml")).read()
    assert "kubectl label namespace <client-namespace> bert-classifier/client=true" in text


# -- Secrets ---------------------------------------------------------------------------
SECRET_RECIPE = re.compile(r"kubectl create secret (\S+) (\S+)((?:[^\n]*\\\n)*[^\n]*)")


def _secret_recipes(text):
    """{Secret name: {key, ...}} that the `kubectl create secret` commands in ``text``
    (a manifest's comments or the README) make."""
    made = {}
    for kind, name, rest in SECRET_RECIPE.findall(text):
        assert kind == "generic", f"kubectl create secret {kind} {name}: keys differ"
        keys = re.findall(r"--from-file=(?:([^=\s]+)=)?(\S+)", rest)
        assert name not in made, f"{name} made twice"
        made[name] = {key or os.path.basename(path) for key, path in keys}
    return made


def _mounted_secret_keys(pod):
    keys = {}
    for volume in pod["spec"]["volumes"]:
        if "secret" in volume:
            secret = volume["secret"]
            keys.setdefault(secret["secretName"], set()).update(
                item["key"] for item in secret["items"])
    return keys


def test_one_secret_recipe_makes_every_key_both_serving_manifests_mount():
    """Both manifests share bert-classifier-tls and bert-classifier-tokens: the recipe in
    each header and the README's makes every key either mounts (a Secret missing one
    keeps the pod from starting), and they are the same recipe."""
    with open(os.path.join(REPO, "README.md")) as f:
        readme = _secret_recipes(f.read())
    wanted = {}
    for name, pod in [("tf-serving.yaml", POD), ("bert-pipeline-server.yaml", SERVER_POD)]:
        with open(os.path.join(KUBERNETES, name)) as f:
            header = f.read()
        recipe = _secret_recipes(header)
        assert recipe == readme, name
        for secret, keys in _mounted_secret_keys(pod).items():
            assert keys <= recipe[secret], (name, secret, keys - recipe[secret])
            wanted.setdefault(secret, set()).update(keys)
        # One certificate for both Services, or a Secret each.
        for host in ("bert-classifier.<namespace>.svc", "bert-classifier-server.<namespace>.svc"):
            assert host in header, (name, host)
    assert readme == wanted == {
        "bert-classifier-tls": {"tls.crt", "tls.key", "ssl_config.txt"},
        "bert-classifier-tokens": {"predict-tokens", "feedback-tokens"}}


# -- KServe's predictor pods: NetworkPolicy --------------------------------------------
KSERVE_DOCS = {doc["kind"]: doc for doc in DOCUMENTS["kserve-inferenceservice.yaml"]}
# Knative's queue-proxy, in front of TF Serving in each predictor pod: its HTTP port
# (8013, h2c, only for gRPC, which the runtime does not declare), the autoscaler's
# metrics, the request metrics for Prometheus. Its admin port (8022) is the kubelet's.
KNATIVE_DATA_PORTS = {8012}
KNATIVE_ADMIN_PORTS = {9090}
KNATIVE_USER_METRICS = 9091


def test_kserve_predictor_pods_admit_only_knatives_queue_proxy():
    """Stock TF Serving in KServe's predictor answers anyone who reaches its ports (no
    token, HandleReloadConfigRequest on gRPC): only the queue-proxy's ports are admitted,
    from Knative's and the ingress's namespaces (and metrics from monitoring); TF
    Serving's own ports never; no gRPC through KServe."""
    policy = KSERVE_DOCS["NetworkPolicy"]
    inference = KSERVE_DOCS["InferenceService"]
    spec = policy["spec"]
    assert spec["podSelector"] == {"matchLabels": {
        "serving.kserve.io/inferenceservice": inference["metadata"]["name"]}}
    assert spec["policyTypes"] == ["Ingress"]
    admitted = {}
    for rule in spec["ingress"]:
        assert rule["ports"] and rule["from"], rule  # no rule admits any port or source
        for peer in rule["from"]:
            assert list(peer) == ["namespaceSelector"], peer  # whole namespaces, named
            namespace = peer["namespaceSelector"]["matchLabels"][
                "kubernetes.io/metadata.name"]
            for port in rule["ports"]:
                assert port["protocol"] == "TCP"
                admitted.setdefault(namespace, set()).add(port["port"])
    assert admitted == {
        "knative-serving": KNATIVE_DATA_PORTS | KNATIVE_ADMIN_PORTS,
        "istio-system": KNATIVE_DATA_PORTS,
        "monitoring": {KNATIVE_USER_METRICS}}
    runtime = KSERVE_DOCS["ServingRuntime"]
    flags = parse_flags(runtime["spec"]["containers"][0]["args"])
    for ports in admitted.values():
        assert not ports & {flags.port, flags.rest_api_port, 8500, 8501}
    # REST only: TF Serving's REST API has no model-management call; gRPC would reach
    # ModelService through the queue-proxy, which checks no token.
    assert runtime["spec"]["protocolVersions"] == ["v1"]


def test_kserves_commented_istio_policy_denies_model_management():
    """The Istio AuthorizationPolicy in the header, for a mesh that routes gRPC to the
    predictor: uncommented, it is a DENY on ModelService for the predictor's pods."""
    text = open(os.path.join(KUBERNETES, "kserve-inferenceservice.yaml")).read()
    block = re.search(r"^# --- AuthorizationPolicy\n((?:#  .*\n|#\n)+)", text, re.M)
    assert block, "no commented AuthorizationPolicy block"
    policy = yaml.safe_load(re.sub(r"^# ?", "", block.group(1), flags=re.M))
    assert policy["apiVersion"] == "security.istio.io/v1"
    assert policy["kind"] == "AuthorizationPolicy"
    spec = policy["spec"]
    assert spec["selector"] == KSERVE_DOCS["NetworkPolicy"]["spec"]["podSelector"]
    assert spec["action"] == "DENY"
    rule, = spec["rules"]
    target, = rule["to"]
    assert target == {"operation": {"paths": ["/tensorflow.serving.ModelService/*"]}}


def test_every_image_of_every_pod_is_an_image_line_the_pin_script_sees():
    """pin-images.sh rewrites `image:` lines: every container of every pod has one (so
    nothing escapes pinning) and the lines are exactly the containers' images."""
    for name, docs in DOCUMENTS.items():
        containers = [c for doc in docs for _, _, spec in pod_security.pods(doc)
                      for _, c in pod_security.containers(spec)]
        containers += [c for doc in docs if doc["kind"] == "ServingRuntime"
                       for c in doc["spec"]["containers"]]
        # KServe's model container takes the runtime's image: it has none of its own.
        expected = [c["image"] for c in containers if c.get("name") != "kserve-container"
                    or "image" in c]
        assert sorted(_images(KUBERNETES)[name]) == sorted(expected), name


def test_check_refuses_every_image_without_a_digest(tmp_path):
    """What a deploy step runs: --check fails naming every image without a digest (as
    the files ship: no digest can be looked up here), and passes once all carry one."""
    digest = re.compile(r"@sha256:[0-9a-f]{64}")
    shutil.copytree(KUBERNETES, tmp_path / "tags")
    for name in _images(tmp_path / "tags"):
        path = tmp_path / "tags" / name
        path.write_text(digest.sub("", path.read_text()))
    files = sorted(tmp_path.glob("tags/*.yaml"))
    refused = _pin("--check", *files)
    images = [(name, image) for name, found in _images(tmp_path / "tags").items()
              for image in found]
    assert len(images) >= 4 and refused.returncode == 1
    for name, image in images:
        assert f"{name}:" in refused.stderr and \
            f": {image} is not pinned by digest" in refused.stderr, image
    fake = "@sha256:" + "0" * 64  # the checker's test input, never shipped
    for path in files:
        path.write_text(IMAGE_LINE.sub(lambda m: m.group(0) + fake, path.read_text()))
    assert _pin("--check", *files).returncode == 0
    files[0].write_text(files[0].read_text().replace(fake, "@sha256:abc"))  # not a digest
    assert _pin("--check", *files).returncode == 1


def test_service_ports_that_carry_tls_say_so_to_a_mesh():
    """Both Services terminate TLS on 8500 and 8501 (HAProxy, the project's server).
    A port named ``grpc`` is plaintext HTTP/2 to Istio (protocol from the name), so a
    client's sidecar spoke h2c to a TLS port and reset every call; ``appProtocol``
    (which Istio reads first) says TLS."""
    for service in (MANIFESTS["Service"], SERVER["Service"]):
        for port in service["spec"]["ports"]:
            assert port.get("appProtocol") == "tls", (service["metadata"]["name"], port)


def _haproxy_condition(condition: str, version: tuple) -> bool:
    """An HAProxy `.if` condition of version_atleast terms, &&, || and !, at ``version``."""
    expression = re.sub(r"version_atleast\(([\d.]+)\)",
                        lambda m: str(version >= tuple(map(int, m.group(1).split(".")))),
                        condition)
    expression = expression.replace("&&", " and ").replace("||", " or ").replace("!", " not ")
    return eval(expression, {"__builtins__": {}})  # noqa: S307 - True/False and operators


def test_the_proxy_uses_max_total_streams_only_where_haproxy_has_it():
    """tune.h2.fe.max-total-streams came in 3.0 and was backported to 2.8.6 (HAProxy's 2.8
    tree) and to 2.9 (2.9.3 at the latest: earlier 2.9 releases are left out); an unknown
    keyword fails the whole config (HAProxy refuses to start, no pod is Ready). The gate
    was version_atleast(2.8): a pinned 2.8.0-2.8.5 would not start."""
    text = open(os.path.join(DEPLOY, "proxy", "haproxy.cfg")).read()
    [condition] = re.findall(r"^\.if (.*)\n\s*tune\.h2\.fe\.max-total-streams", text, re.M)
    has_it = {(2, 6, 12): False, (2, 8, 0): False, (2, 8, 5): False, (2, 8, 6): True,
              (2, 8, 14): True, (2, 9, 0): False, (2, 9, 2): False, (2, 9, 3): True,
              (3, 0, 0): True, (3, 2, 1): True}
    assert {v: _haproxy_condition(condition, v) for v in has_it} == has_it
