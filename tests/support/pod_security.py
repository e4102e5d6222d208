"""Kubernetes Pod Security Standards ("baseline" and "restricted", current version) as a
check over a pod spec, so tests can hold every manifest and compiled spec to them.

The rules are those of https://kubernetes.io/docs/concepts/security/pod-security-standards/
(the policy the built-in Pod Security admission enforces): ``violations(pod_spec)`` names
each field that a namespace labelled ``pod-security.kubernetes.io/enforce: restricted``
would reject. Two relaxations of the admission controller are not applied, so this is
never looser than it: Windows pods (``spec.os.name: windows``) and user-namespaced pods
(``hostUsers: false``) are checked like Linux pods; the ``image`` volume type is not on
the allowed list. ``pod_specs(document)`` finds the pod specs inside a workload, a Pod or
a KServe InferenceService.
"""

LEVELS = ("baseline", "restricted")
CONTAINER_LISTS = ("initContainers", "containers", "ephemeralContainers")

# Baseline.
BASELINE_CAPABILITIES = {"AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL",
                         "MKNOD", "NET_BIND_SERVICE", "SETFCAP", "SETGID", "SETPCAP",
                         "SETUID", "SYS_CHROOT"}
SELINUX_TYPES = {"", "container_t", "container_init_t", "container_kvm_t",
                 "container_engine_t"}
SAFE_SYSCTLS = {"kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range",
                "net.ipv4.ip_unprivileged_port_start", "net.ipv4.tcp_syncookies",
                "net.ipv4.ping_group_range", "net.ipv4.ip_local_reserved_ports",
                "net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_fin_timeout",
                "net.ipv4.tcp_keepalive_intvl", "net.ipv4.tcp_keepalive_probes",
                "net.ipv4.tcp_rmem", "net.ipv4.tcp_wmem"}
APPARMOR_TYPES = {"RuntimeDefault", "Localhost"}
APPARMOR_ANNOTATION = "container.apparmor.security.beta.kubernetes.io/"
# Restricted.
VOLUME_TYPES = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral",
                "persistentVolumeClaim", "projected", "secret"}
SECCOMP_TYPES = {"RuntimeDefault", "Localhost"}

# Where each kind keeps its pod template's spec.
_TEMPLATE_PATHS = {
    "Pod": ("spec",),
    "PodTemplate": ("template", "spec"),
    "Deployment": ("spec", "template", "spec"),
    "ReplicaSet": ("spec", "template", "spec"),
    "ReplicationController": ("spec", "template", "spec"),
    "StatefulSet": ("spec", "template", "spec"),
    "DaemonSet": ("spec", "template", "spec"),
    "Job": ("spec", "template", "spec"),
    "CronJob": ("spec", "jobTemplate", "spec", "template", "spec"),
}
# KServe: a component (predictor, transformer, explainer) is a PodSpec inlined with
# KServe's own fields; its model/framework spec is one more container (KServe names it
# kserve-container). The container names below are the spec keys KServe accepts.
KSERVE_COMPONENTS = ("predictor", "transformer", "explainer")
KSERVE_MODEL_KEYS = ("model", "tensorflow", "pytorch", "sklearn", "xgboost", "onnx",
                     "triton", "pmml", "lightgbm", "paddle", "huggingface", "alibi",
                     "art")
KSERVE_CONTAINER = "kserve-container"


def _get(mapping, *path):
    for key in path:
        if not isinstance(mapping, dict):
            return None
        mapping = mapping.get(key)
    return mapping


def containers(pod_spec):
    """(where, container) for every container of every list."""
    for field in CONTAINER_LISTS:
        for i, container in enumerate(pod_spec.get(field) or []):
            yield f"spec.{field}[{i}] ({container.get('name', '?')})", container


def _baseline(pod_spec, annotations):
    pod = pod_spec.get("securityContext") or {}
    found = []
    for field in ("hostNetwork", "hostPID", "hostIPC"):
        if pod_spec.get(field):
            found.append(f"spec.{field}: host namespaces are not allowed")
    if _get(pod, "windowsOptions", "hostProcess"):
        found.append("spec.securityContext.windowsOptions.hostProcess must not be true")
    for i, volume in enumerate(pod_spec.get("volumes") or []):
        if "hostPath" in volume:
            found.append(f"spec.volumes[{i}] ({volume.get('name')}): hostPath volumes are "
                         "not allowed")
    for name, value in (annotations or {}).items():
        if name.startswith(APPARMOR_ANNOTATION) and not (
                value == "runtime/default" or value.startswith("localhost/")):
            found.append(f"metadata.annotations[{name}]: AppArmor profile {value!r} "
                         "(allowed: runtime/default, localhost/*)")
    contexts = [("spec.securityContext", pod)] + [
        (f"{where}.securityContext", container.get("securityContext") or {})
        for where, container in containers(pod_spec)]
    for where, context in contexts:
        profile = _get(context, "appArmorProfile", "type")
        if profile is not None and profile not in APPARMOR_TYPES:
            found.append(f"{where}.appArmorProfile.type: {profile!r} (allowed: "
                         "RuntimeDefault, Localhost)")
        selinux = context.get("seLinuxOptions") or {}
        if selinux.get("type", "") not in SELINUX_TYPES:
            found.append(f"{where}.seLinuxOptions.type: {selinux['type']!r} is not "
                         "allowed")
        for field in ("user", "role"):
            if selinux.get(field):
                found.append(f"{where}.seLinuxOptions.{field} must not be set")
        if _get(context, "seccompProfile", "type") == "Unconfined":
            found.append(f"{where}.seccompProfile.type: Unconfined is not allowed")
    for sysctl in pod.get("sysctls") or []:
        if sysctl.get("name") not in SAFE_SYSCTLS:
            found.append(f"spec.securityContext.sysctls: {sysctl.get('name')!r} is not a "
                         "safe sysctl")
    for where, container in containers(pod_spec):
        context = container.get("securityContext") or {}
        if context.get("privileged"):
            found.append(f"{where}: privileged containers are not allowed")
        if _get(context, "windowsOptions", "hostProcess"):
            found.append(f"{where}: windowsOptions.hostProcess must not be true")
        added = set(_get(context, "capabilities", "add") or []) - BASELINE_CAPABILITIES
        if added:
            found.append(f"{where}: capabilities.add {sorted(added)} beyond the "
                         "baseline set")
        if context.get("procMount", "Default") != "Default":
            found.append(f"{where}: procMount must be Default")
        for port in container.get("ports") or []:
            if port.get("hostPort"):
                found.append(f"{where}: hostPort {port['hostPort']} is not allowed")
        for field, handler in _handlers(container):
            if handler.get("host"):  # Kubernetes 1.34+: unset or "" only
                found.append(f"{where}: {field}.host must not be set (probes and "
                             "lifecycle hooks reach the pod's own IP only)")
    return found


def _handlers(container):
    """(field, handler) of every probe's and lifecycle hook's httpGet and tcpSocket."""
    places = [(probe, container.get(probe)) for probe in
              ("livenessProbe", "readinessProbe", "startupProbe")]
    places += [(f"lifecycle.{hook}", _get(container, "lifecycle", hook))
               for hook in ("postStart", "preStop")]
    for place, action in places:
        for kind in ("httpGet", "tcpSocket"):
            handler = _get(action, kind)
            if isinstance(handler, dict):
                yield f"{place}.{kind}", handler


def _restricted(pod_spec):
    pod = pod_spec.get("securityContext") or {}
    found = []
    for i, volume in enumerate(pod_spec.get("volumes") or []):
        kinds = set(volume) - {"name"}
        if not kinds <= VOLUME_TYPES:
            found.append(f"spec.volumes[{i}] ({volume.get('name')}): volume type "
                         f"{sorted(kinds - VOLUME_TYPES)} is not allowed (allowed: "
                         f"{', '.join(sorted(VOLUME_TYPES))})")
    if pod.get("runAsNonRoot") is False:
        found.append("spec.securityContext.runAsNonRoot must not be false")
    if pod.get("runAsUser") == 0:
        found.append("spec.securityContext.runAsUser must not be 0")
    pod_seccomp = _get(pod, "seccompProfile", "type")
    if pod_seccomp not in (None, "Unconfined", *SECCOMP_TYPES):  # baseline: Unconfined
        found.append(f"spec.securityContext.seccompProfile.type: {pod_seccomp!r} "
                     "(allowed: RuntimeDefault, Localhost)")
    for where, container in containers(pod_spec):
        context = container.get("securityContext") or {}
        if context.get("allowPrivilegeEscalation") is not False:
            found.append(f"{where}: securityContext.allowPrivilegeEscalation must be "
                         "false")
        non_root = context.get("runAsNonRoot")
        if non_root is False or (non_root is None and pod.get("runAsNonRoot") is not True):
            found.append(f"{where}: runAsNonRoot must be true (in the container's or "
                         "the pod's securityContext)")
        if context.get("runAsUser") == 0:
            found.append(f"{where}: securityContext.runAsUser must not be 0")
        seccomp = _get(context, "seccompProfile", "type")
        if seccomp is None and pod_seccomp is None:
            found.append(f"{where}: seccompProfile.type must be RuntimeDefault or "
                         "Localhost (in the container's or the pod's securityContext)")
        elif seccomp not in (None, "Unconfined", *SECCOMP_TYPES):
            found.append(f"{where}: seccompProfile.type {seccomp!r} (allowed: "
                         "RuntimeDefault, Localhost)")
        capabilities = context.get("capabilities") or {}
        if "ALL" not in (capabilities.get("drop") or []):
            found.append(f"{where}: securityContext.capabilities.drop must include ALL")
        added = set(capabilities.get("add") or []) - {"NET_BIND_SERVICE"}
        if added:
            found.append(f"{where}: capabilities.add {sorted(added)} (restricted allows "
                         "only NET_BIND_SERVICE)")
    return found


def violations(pod_spec, level="restricted", annotations=None):
    """What the Pod Security Standard ``level`` ("baseline" or "restricted", which
    includes baseline) forbids in ``pod_spec`` (a PodSpec dict); empty when it passes.
    ``annotations``: the pod's metadata annotations (the AppArmor ones are checked)."""
    if level not in LEVELS:
        raise ValueError(f"level must be one of {LEVELS}, not {level!r}")
    found = _baseline(pod_spec, annotations)
    if level == "restricted":
        found += _restricted(pod_spec)
    return found


def _kserve_pods(document):
    for component in KSERVE_COMPONENTS:
        spec = _get(document, "spec", component)
        if not spec:
            continue
        pod = dict(spec)
        containers = list(pod.get("containers") or [])
        for key in KSERVE_MODEL_KEYS:
            if key in pod:
                containers.append(dict(pod.pop(key), name=KSERVE_CONTAINER))
        pod["containers"] = containers
        yield component, {"annotations": spec.get("annotations") or {}}, pod


def pods(document):
    """(name, pod metadata, pod spec) for every pod template in ``document``."""
    kind, name = document.get("kind"), _get(document, "metadata", "name")
    if kind == "InferenceService":
        return [(f"{kind}/{name} {component}", metadata, spec)
                for component, metadata, spec in _kserve_pods(document)]
    path = _TEMPLATE_PATHS.get(kind)
    if path is None:
        return []
    spec = _get(document, *path)
    metadata = _get(document, *path[:-1], "metadata") or {}
    if spec is None:
        raise ValueError(f"{kind}/{name} has no {'.'.join(path)}")
    return [(f"{kind}/{name}", metadata, spec)]


def pod_specs(document):
    """(name, pod spec) for every pod template in ``document`` (none for kinds that
    create no pods)."""
    return [(name, spec) for name, _, spec in pods(document)]


def document_violations(document, level="restricted"):
    """{pod name: violations} of every pod template in ``document``."""
    return {name: violations(spec, level, metadata.get("annotations"))
            for name, metadata, spec in pods(document)}
