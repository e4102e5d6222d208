"""Per-request deadlines that stop the work: a TensorFlow call still running at its
request's deadline is cancelled, as TF Serving cancels ``Session::Run`` through
``RunOptions.timeout_in_ms`` (REST: ``--rest_api_timeout_in_ms``; gRPC: the client's
deadline). A deadline is a ``time.monotonic()`` value; ``None`` means none.

Tested with a model server: tests/serving/test_deadlines.py.
"""
from __future__ import annotations

import dataclasses
import heapq
import itertools
import threading
import time
from contextlib import contextmanager
from typing import Callable, Iterator, List, Optional

import grpc
import tensorflow as tf
from tensorflow.python.eager import cancellation

from serving.errors import ServingError

Deadline = Optional[float]
_UNBOUNDED = 365 * 24 * 3600.0  # gRPC reports "no deadline" as a huge time remaining

# TensorFlow keeps the cancellation manager of ``get_cancelable_function`` in one
# process-wide global, which concurrent requests would overwrite; each thread has its own
# here (TF reads it through ``cancellation.context()`` when it starts a function).
_thread = threading.local()
cancellation.context = lambda: getattr(_thread, "manager", None)


def after(seconds: Optional[float]) -> Deadline:
    """The deadline ``seconds`` from now (None, or more than a year: no deadline)."""
    if seconds is None or seconds > _UNBOUNDED:
        return None
    return time.monotonic() + seconds


def remaining(deadline: Deadline) -> Optional[float]:
    """Seconds left (at least 0), or None without a deadline."""
    return None if deadline is None else max(0.0, deadline - time.monotonic())


def exceeded() -> ServingError:
    return ServingError(grpc.StatusCode.DEADLINE_EXCEEDED,
                        "Deadline exceeded: the request ran past its deadline and was "
                        "cancelled")


def check(deadline: Deadline) -> None:
    """Raises DEADLINE_EXCEEDED once ``deadline`` has passed."""
    if deadline is not None and time.monotonic() >= deadline:
        raise exceeded()


@contextmanager
def scope(deadline: Deadline) -> Iterator[None]:
    """Runs the block under ``deadline``: a ``call`` in it (same thread) is cancelled
    there."""
    outer = current()
    _thread.deadline = deadline
    try:
        yield
    finally:
        _thread.deadline = outer


def current() -> Deadline:
    """The deadline of this thread's enclosing ``scope``."""
    return getattr(_thread, "deadline", None)


def call(fn: Callable, **kwargs):
    """``fn(**kwargs)`` (a TensorFlow function), cancelled at the deadline of the
    enclosing ``scope`` (DEADLINE_EXCEEDED)."""
    deadline = current()
    if deadline is None:
        return fn(**kwargs)
    check(deadline)
    watch = _WATCHDOG.add(deadline)
    _thread.manager = watch.manager
    try:
        return fn(**kwargs)
    except tf.errors.OpError:
        # Not manager.is_cancelled: TensorFlow also cancels it when an op fails.
        if watch.fired:
            raise exceeded() from None
        raise
    finally:
        _thread.manager = None
        _WATCHDOG.remove(watch)


@dataclasses.dataclass(order=True)
class _Watch:
    """One call under a deadline, with the manager that cancels it."""

    deadline: float
    sequence: int
    manager: object = dataclasses.field(compare=False)
    fired: bool = dataclasses.field(default=False, compare=False)  # cancelled at deadline
    done: bool = dataclasses.field(default=False, compare=False)  # the call returned


class _Watchdog:
    """One daemon thread that cancels each registered manager when its deadline comes."""

    def __init__(self):
        self._heap: List[_Watch] = []
        self._order = itertools.count()
        self._changed = threading.Condition()
        self._thread: Optional[threading.Thread] = None

    def add(self, deadline: float) -> _Watch:
        watch = _Watch(deadline, next(self._order), cancellation.CancellationManager())
        with self._changed:
            heapq.heappush(self._heap, watch)
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="deadlines",
                                                daemon=True)
                self._thread.start()
            self._changed.notify()
        return watch

    def remove(self, watch: _Watch) -> None:
        with self._changed:
            watch.done = True  # dropped when it reaches the top of the heap

    def _loop(self) -> None:
        with self._changed:
            while True:
                while self._heap and self._heap[0].done:
                    heapq.heappop(self._heap)
                if not self._heap:
                    self._changed.wait()
                    continue
                wait = self._heap[0].deadline - time.monotonic()
                if wait > 0:
                    self._changed.wait(wait)
                    continue
                watch = heapq.heappop(self._heap)
                watch.fired = True
                watch.manager.start_cancel()


_WATCHDOG = _Watchdog()
