"""tests/support/pod_security.py: a pod hardened as the project's manifests are passes
"restricted"; each rule of the Pod Security Standards catches its own violation, at the
level it belongs to; pod specs are found in every kind of workload."""
import copy

import pytest

from tests.support.pod_security import document_violations, pod_specs, violations


def _hardened():
    return {
        "automountServiceAccountToken": False,
        "securityContext": {"runAsNonRoot": True, "runAsUser": 1000, "runAsGroup": 1000,
                            "fsGroup": 1000, "seccompProfile": {"type": "RuntimeDefault"},
                            "sysctls": [{"name": "net.ipv4.tcp_keepalive_time",
                                         "value": "60"}]},
        "initContainers": [{"name": "init", "image": "busybox", "securityContext": {
            "allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}}],
        "containers": [{"name": "app", "image": "app", "ports": [{"containerPort": 80}],
                        "securityContext": {
                            "allowPrivilegeEscalation": False, "runAsNonRoot": True,
                            "readOnlyRootFilesystem": True,
                            "capabilities": {"drop": ["ALL"],
                                             "add": ["NET_BIND_SERVICE"]}}}],
        "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": "1Gi"}},
                    {"name": "tls", "secret": {"secretName": "tls"}},
                    {"name": "models", "persistentVolumeClaim": {"claimName": "m"}}],
    }


def test_a_hardened_pod_passes_both_levels():
    assert violations(_hardened()) == []
    assert violations(_hardened(), "baseline") == []


def test_container_settings_may_come_from_the_pod_and_override_it():
    pod = _hardened()
    app = pod["containers"][0]["securityContext"]
    del app["runAsNonRoot"]  # inherited from the pod
    app["seccompProfile"] = {"type": "Localhost", "localhostProfile": "p.json"}
    assert violations(pod) == []
    del pod["securityContext"]["runAsNonRoot"]  # now only the container may say it
    assert [v for v in violations(pod) if "runAsNonRoot" in v] == [
        "spec.initContainers[0] (init): runAsNonRoot must be true (in the container's or "
        "the pod's securityContext)",
        "spec.containers[0] (app): runAsNonRoot must be true (in the container's or the "
        "pod's securityContext)"]
    del pod["securityContext"]["seccompProfile"]  # app keeps its own, init has none
    assert [v for v in violations(pod) if "seccomp" in v] == [
        "spec.initContainers[0] (init): seccompProfile.type must be RuntimeDefault or "
        "Localhost (in the container's or the pod's securityContext)"]


def _set(path, value):
    def change(pod):
        *parents, last = path
        target = pod
        for key in parents:
            target = target[key] if not isinstance(key, str) or key in target \
                else target.setdefault(key, {})
        if value is DELETE:
            del target[last]
        else:
            target[last] = value
    return change


DELETE = object()
APP = ("containers", 0, "securityContext")
INIT = ("initContainers", 0, "securityContext")
POD = ("securityContext",)
# (change, the level that forbids it, a fragment of the message)
RULES = {
    "host network": (_set(("hostNetwork",), True), "baseline", "spec.hostNetwork"),
    "host PID": (_set(("hostPID",), True), "baseline", "spec.hostPID"),
    "host IPC": (_set(("hostIPC",), True), "baseline", "spec.hostIPC"),
    "hostProcess pod": (_set(POD + ("windowsOptions",), {"hostProcess": True}),
                        "baseline", "windowsOptions.hostProcess"),
    "hostProcess container": (_set(INIT + ("windowsOptions",), {"hostProcess": True}),
                              "baseline", "(init): windowsOptions.hostProcess"),
    "privileged": (_set(APP + ("privileged",), True), "baseline", "privileged"),
    "capability beyond baseline": (_set(APP + ("capabilities", "add"), ["SYS_ADMIN"]),
                                   "baseline", "['SYS_ADMIN'] beyond the baseline set"),
    "baseline capability in restricted": (
        _set(APP + ("capabilities", "add"), ["CHOWN"]), "restricted",
        "['CHOWN'] (restricted allows only NET_BIND_SERVICE)"),
    "capabilities not dropped": (_set(INIT + ("capabilities",), {"drop": ["NET_RAW"]}),
                                 "restricted", "(init): securityContext.capabilities.drop"),
    "hostPath": (_set(("volumes", 0), {"name": "h", "hostPath": {"path": "/"}}),
                 "baseline", "hostPath volumes are not allowed"),
    "hostPort": (_set(("containers", 0, "ports", 0, "hostPort"), 80), "baseline",
                 "hostPort 80"),
    "AppArmor field": (_set(APP + ("appArmorProfile",), {"type": "Unconfined"}),
                       "baseline", "appArmorProfile.type: 'Unconfined'"),
    "SELinux type": (_set(POD + ("seLinuxOptions",), {"type": "spc_t"}), "baseline",
                     "seLinuxOptions.type: 'spc_t'"),
    "SELinux user": (_set(APP + ("seLinuxOptions",), {"user": "system_u"}), "baseline",
                     "seLinuxOptions.user"),
    "proc mount": (_set(APP + ("procMount",), "Unmasked"), "baseline", "procMount"),
    "seccomp unconfined": (_set(INIT + ("seccompProfile",), {"type": "Unconfined"}),
                           "baseline", "seccompProfile.type: Unconfined"),
    "seccomp missing": (_set(POD + ("seccompProfile",), DELETE), "restricted",
                        "seccompProfile.type must be RuntimeDefault or Localhost"),
    "unsafe sysctl": (_set(POD + ("sysctls",), [{"name": "kernel.msgmax", "value": "1"}]),
                      "baseline", "'kernel.msgmax' is not a safe sysctl"),
    "volume type": (_set(("volumes", 1), {"name": "n", "nfs": {"server": "s", "path": "/"}}),
                    "restricted", "volume type ['nfs'] is not allowed"),
    "privilege escalation unset": (_set(APP + ("allowPrivilegeEscalation",), DELETE),
                                   "restricted", "allowPrivilegeEscalation must be false"),
    "root allowed by a container": (_set(APP + ("runAsNonRoot",), False), "restricted",
                                    "(app): runAsNonRoot must be true"),
    "root allowed by the pod": (_set(POD + ("runAsNonRoot",), False), "restricted",
                                "spec.securityContext.runAsNonRoot must not be false"),
    "uid 0 pod": (_set(POD + ("runAsUser",), 0), "restricted",
                  "spec.securityContext.runAsUser must not be 0"),
    "uid 0 container": (_set(INIT + ("runAsUser",), 0), "restricted",
                        "(init): securityContext.runAsUser must not be 0"),
    "probe host": (_set(("containers", 0, "readinessProbe"),
                        {"httpGet": {"host": "10.0.0.1", "port": 80}}), "baseline",
                   "(app): readinessProbe.httpGet.host must not be set"),
    "lifecycle host": (_set(("initContainers", 0, "lifecycle"),
                            {"preStop": {"tcpSocket": {"host": "metadata", "port": 80}}}),
                       "baseline", "(init): lifecycle.preStop.tcpSocket.host must not be set"),
}


def test_probe_and_lifecycle_handlers_may_leave_host_empty():
    """Baseline (v1.34+) forbids only a set ``host``: unset or "" (the pod's IP) pass."""
    pod = _hardened()
    app = pod["containers"][0]
    app["livenessProbe"] = {"tcpSocket": {"port": 80}}
    app["startupProbe"] = {"httpGet": {"host": "", "port": 80, "path": "/"}}
    app["lifecycle"] = {"postStart": {"exec": {"command": ["true"]}},
                        "preStop": {"httpGet": {"port": 80, "path": "/"}}}
    assert violations(pod) == []


@pytest.mark.parametrize("rule", sorted(RULES))
def test_each_rule_catches_its_violation_at_its_level(rule):
    change, level, fragment = RULES[rule]
    pod = _hardened()
    change(pod)
    found = violations(pod)
    assert any(fragment in v for v in found), found
    baseline = violations(pod, "baseline")
    assert any(fragment in v for v in baseline) == (level == "baseline"), baseline


def test_ephemeral_containers_and_apparmor_annotations_are_checked():
    pod = _hardened()
    pod["ephemeralContainers"] = [{"name": "debug", "image": "busybox"}]
    assert any(v.startswith("spec.ephemeralContainers[0] (debug): ")
               for v in violations(pod))
    annotation = {"container.apparmor.security.beta.kubernetes.io/app": "unconfined"}
    assert violations(_hardened(), "baseline", annotation) == [
        "metadata.annotations[container.apparmor.security.beta.kubernetes.io/app]: "
        "AppArmor profile 'unconfined' (allowed: runtime/default, localhost/*)"]
    fine = {"container.apparmor.security.beta.kubernetes.io/app": "localhost/p"}
    assert violations(_hardened(), "restricted", fine) == []


def test_pod_specs_are_found_in_every_kind():
    spec = _hardened()
    template = {"metadata": {"annotations": {
        "container.apparmor.security.beta.kubernetes.io/app": "unconfined"}},
        "spec": spec}
    for kind, body in [
        ("Deployment", {"spec": {"template": template}}),
        ("StatefulSet", {"spec": {"template": template}}),
        ("DaemonSet", {"spec": {"template": template}}),
        ("Job", {"spec": {"template": template}}),
        ("CronJob", {"spec": {"jobTemplate": {"spec": {"template": template}}}}),
        ("Pod", dict(template)),
    ]:
        document = dict(copy.deepcopy(body), kind=kind,
                        metadata=dict(template["metadata"], name="x"))
        assert pod_specs(document) == [(f"{kind}/x", spec)]
        (name, found), = document_violations(document).items()
        assert len(found) == 1 and "AppArmor" in found[0], (kind, found)
    assert pod_specs({"kind": "Service", "metadata": {"name": "x"}}) == []
    with pytest.raises(ValueError, match="Deployment/x has no spec.template.spec"):
        pod_specs({"kind": "Deployment", "metadata": {"name": "x"}, "spec": {}})


def test_a_kserve_predictor_is_a_pod_spec_and_its_model_a_container():
    model = {"modelFormat": {"name": "tensorflow"}, "storageUri": "pvc://m/x"}
    inference = {"kind": "InferenceService", "metadata": {"name": "bert"},
                 "spec": {"predictor": {"minReplicas": 2, "model": model}}}
    (name, spec), = pod_specs(inference)
    assert name == "InferenceService/bert predictor"
    assert spec["containers"] == [dict(model, name="kserve-container")]
    assert "model" not in spec
    found = violations(spec)
    assert "spec.containers[0] (kserve-container): securityContext."\
        "allowPrivilegeEscalation must be false" in found
    hardened = _hardened()
    predictor = dict(hardened, model=dict(model, securityContext=hardened["containers"][0][
        "securityContext"]), minReplicas=2)
    del predictor["containers"]
    inference["spec"] = {"predictor": predictor}
    assert document_violations(inference) == {"InferenceService/bert predictor": []}
