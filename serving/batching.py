"""Server-side dynamic batching, configured like TF Serving's ``--batching_parameters_file``.

Concurrent requests to one signature are queued and run as one call once the
queue holds ``max_batch_size`` rows or the oldest request has waited
``batch_timeout_micros``; each caller gets back its own rows.

At most ``num_batch_threads`` batches run at once in the whole server, whichever model,
version and signature they are of (``shared_slots``), as TF Serving runs them all on one
shared batch scheduler of that many threads. A batch closed while they are all busy
waits for one as it is (TF Serving's open batch would take more requests meanwhile).

Deadlines (as TF Serving's batching session): a caller gives up at its deadline, and
its request is dropped if no batch has run it yet; a batch runs until the latest
deadline of its requests (no deadline if one of them has none), so it is never
cancelled while a caller still waits for it.
"""
from __future__ import annotations

import collections
import dataclasses
import logging
import queue
import threading
import time
from concurrent.futures import Future, TimeoutError as FutureTimeout
from typing import Callable, Dict, List, Optional, Sequence

import grpc
import numpy as np
from google.protobuf import descriptor_pb2, text_format, wrappers_pb2

from serving import deadlines
from serving.descriptors import message_class
from serving.errors import ServingError, invalid

Tensors = Dict[str, np.ndarray]
# How long closing waits for its batch threads to finish the queued requests (a batch of
# 128 long texts takes seconds on 2 cores).
CLOSE_TIMEOUT_SECONDS = 60.0


def _batching_parameters_class():
    """``tensorflow.serving.BatchingParameters`` (session_bundle_config.proto), built here:
    the tensorflow-serving-api wheel does not ship it. Same package, names and numbers."""
    field = descriptor_pb2.FieldDescriptorProto
    proto = descriptor_pb2.FileDescriptorProto(
        name="tensorflow_serving/servables/tensorflow/session_bundle_config.proto",
        package="tensorflow.serving", syntax="proto3",
        dependency=[wrappers_pb2.DESCRIPTOR.name])
    message = proto.message_type.add(name="BatchingParameters")
    for name, number, wrapper in [
            ("max_batch_size", 1, "Int64Value"), ("batch_timeout_micros", 2, "Int64Value"),
            ("max_enqueued_batches", 3, "Int64Value"), ("num_batch_threads", 4, "Int64Value"),
            ("thread_pool_name", 5, "StringValue"),
            ("enable_large_batch_splitting", 8, "BoolValue"),
            ("max_execution_batch_size", 9, "Int64Value")]:
        message.field.add(name=name, number=number, type=field.TYPE_MESSAGE,
                          type_name=f".google.protobuf.{wrapper}", label=field.LABEL_OPTIONAL)
    message.field.add(name="allowed_batch_sizes", number=6, type=field.TYPE_INT64,
                      label=field.LABEL_REPEATED)
    message.field.add(name="pad_variable_length_inputs", number=7, type=field.TYPE_BOOL,
                      label=field.LABEL_OPTIONAL)
    return message_class(proto, "tensorflow.serving.BatchingParameters", [wrappers_pb2])


BatchingParametersProto = _batching_parameters_class()
IGNORED_FIELDS = ("thread_pool_name", "enable_large_batch_splitting",
                  "max_execution_batch_size")  # set or not: wrappers


@dataclasses.dataclass(frozen=True)
class BatchingParameters:
    """The fields of TF Serving's ``BatchingParameters`` this server honours (its defaults)."""

    max_batch_size: int = 1000
    batch_timeout_micros: int = 0
    max_enqueued_batches: int = 10
    num_batch_threads: int = 4

    @classmethod
    def parse(cls, text: str, source: str = "batching parameters") -> "BatchingParameters":
        """Reads the text proto as TF Serving does, with its ``BatchingParameters`` message
        (``max_batch_size { value: 32 }``; a field given twice, a bare ``max_batch_size:
        32`` or an unknown field is refused) and its checks. ``allowed_batch_sizes``,
        ``pad_variable_length_inputs``, ``thread_pool_name``, ``enable_large_batch_
        splitting`` and ``max_execution_batch_size`` are checked and ignored, with a
        warning: batches here are never padded, nor split."""
        message = BatchingParametersProto()
        try:
            text_format.Parse(text, message)
        except text_format.ParseError as error:
            raise ValueError(f"{source}: not a BatchingParameters text proto: {error}") \
                from None
        values = {f.name: getattr(message, f.name).value for f in dataclasses.fields(cls)
                  if message.HasField(f.name)}
        params = cls(**values)
        if min(params.max_batch_size, params.num_batch_threads,
               params.max_enqueued_batches) < 1 or params.batch_timeout_micros < 0:
            raise ValueError(f"{source}: max_batch_size, num_batch_threads and "
                             "max_enqueued_batches must be >= 1, batch_timeout_micros >= 0")
        sizes = list(message.allowed_batch_sizes)
        splitting = message.enable_large_batch_splitting.value
        execution = message.max_execution_batch_size.value
        if splitting and execution > params.max_batch_size:  # TensorFlow's batch scheduler
            raise ValueError(f"{source}: max_execution_batch_size {execution} is larger than "
                             f"max_batch_size {params.max_batch_size}")
        if sizes and sizes[-1] != params.max_batch_size:  # split or not (bundle_factory_util)
            raise ValueError(f"{source}: Last entry in allowed_batch_sizes must match "
                             f"max_batch_size; last entry was {sizes[-1]}; expected "
                             f"{params.max_batch_size}")
        if sizes and splitting and any(b <= a for a, b in zip(sizes, sizes[1:])):
            raise ValueError(f"{source}: allowed_batch_sizes entries must be monotonically "
                             f"increasing")
        ignored = [name for name in IGNORED_FIELDS if message.HasField(name)] + (
            ["allowed_batch_sizes"] if sizes else []) + (
            ["pad_variable_length_inputs"] if message.pad_variable_length_inputs else [])
        if ignored:
            logging.getLogger("serving").warning(
                "%s: %s accepted and ignored by this server (its batches are never padded "
                "nor split)", source, ", ".join(ignored))
        return params

    @classmethod
    def from_file(cls, path: str) -> "BatchingParameters":
        with open(path, encoding="utf-8") as f:
            return cls.parse(f.read(), path)


@dataclasses.dataclass
class _Task:
    inputs: Tensors
    size: int
    result: Future  # cancelled when its caller gave up before a batch took it
    deadline: deadlines.Deadline = None
    queued_at: float = dataclasses.field(default_factory=time.monotonic)


# Told of every batch before it runs: a name, the batch's rows and each of its requests'
# seconds in the queue (serving.metrics.Metrics.observe_batch). An error is logged.
BatchObserver = Callable[[str, int, Sequence[float]], None]


class BatchSlots:
    """``count`` batch threads shared by batchers, handed out in the order their batches
    asked (``with slots:`` runs one batch). A ``threading.Semaphore`` is not fair: the
    thread that releases it takes it straight back, so a busy signature kept every other
    waiting past its deadlines, and a new version's warmup waited until the old one's
    load stopped. TF Serving's shared scheduler takes its queues in turn."""

    def __init__(self, count: int):
        self.count = count
        self._free = count
        self._waiting: "collections.deque[threading.Event]" = collections.deque()
        self._lock = threading.Lock()

    def __enter__(self) -> "BatchSlots":
        with self._lock:
            if self._free and not self._waiting:
                self._free -= 1
                return self
            turn = threading.Event()
            self._waiting.append(turn)
        turn.wait()  # set by the release that hands this batch its slot
        return self

    def __exit__(self, *exc) -> None:
        with self._lock:
            if self._waiting:
                self._waiting.popleft().set()  # the slot passes to the longest waiting
            else:
                self._free += 1


def shared_slots(params: BatchingParameters) -> BatchSlots:
    """The server's batch threads, for every ``Batcher`` of it: at most
    ``params.num_batch_threads`` batches run at once (TF Serving's SavedModelBundleFactory
    makes one shared batch scheduler for the server)."""
    return BatchSlots(params.num_batch_threads)


class QueueFull(Exception):
    """More rows than ``max_enqueued_batches`` x ``max_batch_size`` would be waiting."""


class Batcher:
    """Runs ``fn`` on concatenated requests; ``fn`` maps batch-major tensors to the same
    (under the batch's ``deadlines.scope``). ``observe``, if given, is told of each batch.
    ``slots``: the server's ``shared_slots`` (None: ``num_batch_threads`` of its own)."""

    def __init__(self, fn: Callable[[Tensors], Tensors], params: BatchingParameters,
                 name: str = "batcher", observe: Optional[BatchObserver] = None,
                 slots: Optional[BatchSlots] = None):
        self._fn = fn
        self._slots = slots or shared_slots(params)
        self._params = params
        self._name = name
        self._observe = observe
        # TF Serving bounds the queue in batches; here in their rows (a batch is at most
        # max_batch_size rows), so requests of many rows fill it as many batches would
        self._capacity = params.max_enqueued_batches * params.max_batch_size
        self._queued_rows = 0  # rows of the requests in _tasks (under _closing)
        # Room for one stop per thread beyond the requests: stop() never waits for it.
        self._tasks: "queue.Queue[_Task | None]" = queue.Queue(
            maxsize=self._capacity + params.num_batch_threads)
        self._threads = [threading.Thread(target=self._loop, name=f"{name}-{i}", daemon=True)
                         for i in range(params.num_batch_threads)]
        self._take = threading.Lock()  # one thread assembles a batch at a time
        self._carried: "collections.deque[_Task | None]" = collections.deque()  # next first
        self._closed = False  # set under _closing: no request is queued after the stops
        self._closing = threading.Lock()
        for thread in self._threads:
            thread.start()

    def __call__(self, inputs: Tensors, deadline: deadlines.Deadline = None) -> Tensors:
        """This request's rows of its batch's outputs; DEADLINE_EXCEEDED at ``deadline``;
        INVALID_ARGUMENT for more rows than ``max_batch_size``, as TF Serving's batch
        scheduler (whose limit on one request is ``max_batch_size``)."""
        sizes = {len(v) for v in inputs.values()}
        if len(sizes) > 1:  # merged, one caller's rows would pair with another's
            raise invalid("Batching Run() input tensors must have equal 0th-dimension size")
        size = sizes.pop() if sizes else 0
        if size > self._params.max_batch_size:
            raise invalid(f"Task size {size} is larger than maximum input batch size "
                          f"{self._params.max_batch_size}")
        task = _Task(inputs, size, Future(), deadline)
        with self._closing:
            queued = not self._closed
            if queued:
                if self._tasks.qsize() >= self._capacity or \
                        self._queued_rows + size > self._capacity:
                    raise QueueFull("the batch queue is full")
                self._tasks.put_nowait(task)
                self._queued_rows += size
        if not queued:  # the version was unloaded as this request came in: no batch thread
            deadlines.check(deadline)
            with deadlines.scope(deadline):
                return self._fn(inputs)
        try:
            return task.result.result(timeout=deadlines.remaining(deadline))
        except FutureTimeout:
            task.result.cancel()  # not taken yet: no batch will run it
            raise deadlines.exceeded() from None

    def close(self, timeout: float = CLOSE_TIMEOUT_SECONDS) -> None:
        """``stop``, then ``wait`` up to ``timeout`` seconds, with a warning naming the
        threads still running then."""
        self.stop()
        self.wait(time.monotonic() + timeout, timeout)

    def stop(self) -> None:
        """Lets the batch threads run the requests already queued, then stop; a request
        that comes after runs alone, in its caller's thread."""
        with self._closing:
            if self._closed:
                return
            self._closed = True
            for _ in self._threads:
                self._tasks.put_nowait(None)  # after every queued request; never full

    def wait(self, deadline: float, timeout: float) -> bool:
        """Waits until the batch threads have stopped or ``deadline`` (monotonic; the
        ``timeout`` it stands for is only for the warning); True when they have. A thread
        still running keeps ``fn`` (an unloaded version, and its memory) from being
        collected."""
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        running = [thread.name for thread in self._threads if thread.is_alive()]
        if running:
            logging.getLogger("serving").warning(
                "%s: batch threads %s still running %gs after close; the version's memory "
                "is released after they finish, at the next load or unload", self._name,
                running, timeout)
        return not running

    def _next_batch(self) -> List[_Task] | None:
        with self._take:
            first = self._first()
            if first is None:
                return None
            batch, rows = [first], first.size
            # the batch's clock starts when its oldest request arrived (TF Serving's
            # open batch), not when a thread was free to take it
            deadline = first.queued_at + self._params.batch_timeout_micros / 1e6
            while rows < self._params.max_batch_size:
                try:  # a wait past what the clock can count (1e16 us) is as good as forever
                    task = self._taken(self._tasks.get(timeout=min(
                        threading.TIMEOUT_MAX, max(0.0, deadline - time.monotonic()))))
                except queue.Empty:
                    break
                if task is None:  # a stop: it waits for a thread after this batch
                    self._carried.appendleft(None)
                    break
                if task.result.cancelled():
                    continue
                if rows + task.size > self._params.max_batch_size or not _compatible(
                        first.inputs, task.inputs):
                    self._carried.append(task)  # does not fit: it starts the next batch
                    break
                if task.result.set_running_or_notify_cancel():
                    batch.append(task)
                    rows += task.size
            return batch

    def _first(self) -> Optional[_Task]:
        """The next request whose caller still waits (None: closing)."""
        while True:
            task = self._carried.popleft() if self._carried else self._taken(self._tasks.get())
            if task is None or task.result.set_running_or_notify_cancel():
                return task

    def _taken(self, task: Optional[_Task]) -> Optional[_Task]:
        """``task``, just taken out of the queue: its rows leave the queue's count."""
        if task is not None:
            with self._closing:
                self._queued_rows -= task.size
        return task

    def _loop(self) -> None:
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            self._run(batch)

    def _run(self, batch: List[_Task]) -> None:
        with self._slots:  # the server's num_batch_threads, shared by every batcher
            batch = _unexpired(batch)
            if batch:
                self._run_now(batch)

    def _run_now(self, batch: List[_Task]) -> None:
        if self._observe:
            now = time.monotonic()
            try:
                self._observe(self._name, sum(t.size for t in batch),
                              [now - t.queued_at for t in batch])
            except Exception:  # noqa: BLE001 - the metrics never fail a batch
                logging.getLogger("serving").exception("%s: batch metrics failed", self._name)
        try:
            deadline = (None if any(t.deadline is None for t in batch)
                        else max(t.deadline for t in batch))
            merged = batch[0].inputs if len(batch) == 1 else {
                k: np.concatenate([t.inputs[k] for t in batch]) for k in batch[0].inputs}
            with deadlines.scope(deadline):
                outputs = self._fn(merged)
            rows = sum(t.size for t in batch)
            if any(np.ndim(v) == 0 or len(v) != rows for v in outputs.values()):
                raise ServingError(  # sliced by request, rows would go to the wrong caller
                    grpc.StatusCode.FAILED_PRECONDITION,
                    "Batched output tensor's 0th dimension does not equal the sum of the 0th "
                    "dimension sizes of the input tensors")
            start = 0
            for task in batch:
                task.result.set_result({k: v[start:start + task.size]
                                        for k, v in outputs.items()})
                start += task.size
        except BaseException as error:  # every waiting caller gets the error
            for task in batch:
                if not task.result.done():
                    task.result.set_exception(error)


def _unexpired(batch: List[_Task]) -> List[_Task]:
    """The tasks whose callers still wait; the others (deadline passed while the batch
    waited for a thread) get DEADLINE_EXCEEDED, as their callers did, and do not run."""
    live = []
    for task in batch:
        if task.deadline is not None and time.monotonic() >= task.deadline:
            task.result.set_exception(deadlines.exceeded())
        else:
            live.append(task)
    return live


def _compatible(a: Tensors, b: Tensors) -> bool:
    return a.keys() == b.keys() and all(
        a[k].shape[1:] == b[k].shape[1:] and a[k].dtype.kind == b[k].dtype.kind for k in a)
