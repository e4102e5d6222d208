"""Graceful shutdown (SIGTERM, SIGINT), as Kubernetes expects of a pod it stops.

Tested with a model server: tests/serving/test_drain.py, tests/serving/test_proxy.py.

1. Readiness turns false at once: model metadata (the manifests' readiness probe path)
   answers UNAVAILABLE (REST 503), so load balancers that probe stop sending.
2. The listeners stay open ``--drain_delay_seconds``: requests still sent while the pod
   leaves the Service's endpoints are answered (REST answers say ``Connection: close`` and close their connection).
3. The listeners close; requests in flight get ``--drain_grace_seconds`` to finish. A
   request that comes on a kept-alive REST connection from then on is answered 503
   (``Connection: close``), not run (gRPC's stop refuses new calls itself).
4. Exit 0 once none is left; 1 if some were still running at the end of the grace
   period, or if a second signal came (both logged, with the count of requests cut).
"""
from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Dict, Iterator

import grpc

from serving.errors import ServingError

TRANSPORTS = ("REST", "gRPC")


class Drain:
    """Whether the server is draining, and how many requests each transport is running."""

    def __init__(self):
        self._lock = threading.Lock()
        self._running = dict.fromkeys(TRANSPORTS, 0)
        self.draining = False
        self.closed = False  # the listeners closed: kept-alive connections get no new work
        self.on_begin: list = []  # called as the drain begins (the gRPC health service)

    def begin(self) -> None:
        self.draining = True
        for callback in self.on_begin:
            callback()

    def check_ready(self) -> None:
        """Raises UNAVAILABLE while draining (the readiness answer)."""
        if self.draining:
            raise ServingError(grpc.StatusCode.UNAVAILABLE,
                               "the server is shutting down (draining): send new requests "
                               "to another replica")

    def started(self, transport: str) -> None:
        with self._lock:
            self._running[transport] += 1

    def finished(self, transport: str) -> None:
        with self._lock:
            self._running[transport] -= 1

    @contextmanager
    def request(self, transport: str) -> Iterator[None]:
        self.started(transport)
        try:
            yield
        finally:
            self.finished(transport)

    def running(self) -> Dict[str, int]:
        with self._lock:
            return dict(self._running)


def describe(running: Dict[str, int]) -> str:
    """``10 REST and 4 gRPC requests``."""
    return " and ".join(f"{running[t]} {t}" for t in TRANSPORTS) + " requests"
