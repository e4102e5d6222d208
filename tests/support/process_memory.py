"""A process's memory as the kernel counts it (/proc/<pid>/status)."""


def memory_bytes(pid: int) -> tuple:
    """(resident, peak resident) bytes of process ``pid``: VmRSS and VmHWM."""
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        fields = {line.split(":")[0]: int(line.split()[1]) * 1024 for line in status
                  if line.startswith(("VmRSS:", "VmHWM:"))}
    return fields["VmRSS"], fields["VmHWM"]
