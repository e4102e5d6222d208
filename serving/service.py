"""What both transports do with a request: find the version, run it, count it."""
from __future__ import annotations

import dataclasses
import time
from contextlib import contextmanager
from typing import Dict, Iterator, List, Optional

from serving.contract import TEXT_FEATURE
from serving.errors import ServingError
from serving.metrics import Metrics
from serving.model_store import ModelStore, VersionState
from serving.servable import Servable, Tensors



@dataclasses.dataclass(frozen=True)
class ModelRef:
    """Which model a request names: latest version, a version, or a version label."""

    name: str
    version: Optional[int] = None
    label: Optional[str] = None


class Service:
    def __init__(self, store: ModelStore, metrics: Optional[Metrics] = None,
                 feedback=None):
        self.store = store
        self.metrics = metrics or Metrics()
        self.feedback = feedback  # serving.feedback.FeedbackLog, when recording is on

    @contextmanager
    def _observed(self, ref: ModelRef, api: str, entrypoint: str, rows: int = 0) -> Iterator:
        started, status = time.perf_counter(), "OK"
        try:
            yield
        except ServingError as error:
            status = error.code.name
            raise
        except Exception:
            status = "INTERNAL"
            raise
        finally:
            self.metrics.observe(ref.name, api, entrypoint, status,
                                 time.perf_counter() - started, rows)

    def predict(self, ref: ModelRef, signature: str, inputs: Tensors, entrypoint: str,
                output_filter: Optional[List[str]] = None):
        """``(servable, signature key, outputs)``."""
        rows = _rows(inputs)
        with self._observed(ref, "predict", entrypoint, rows):
            servable = self._get(ref)
            key, _ = servable.signature(signature)
            return servable, key, servable.run(key, inputs, output_filter)

    def classify(self, ref: ModelRef, signature: str, examples: List[bytes], entrypoint: str):
        """``(servable, rows of (label, score), prediction ids)``; ids only when feedback
        recording is on and every example has a ``text`` feature."""
        with self._observed(ref, "classify", entrypoint, len(examples)):
            servable = self._get(ref)
            rows = servable.classify(signature, examples)
        ids: List[str] = []
        texts = _texts(examples) if self.feedback is not None else None
        if texts is not None:
            ids = self.feedback.record(servable.name, servable.version, texts, rows)
        return servable, rows, ids

    def regress(self, ref: ModelRef, signature: str, examples: List[bytes], entrypoint: str):
        with self._observed(ref, "regress", entrypoint, len(examples)):
            servable = self._get(ref)
            return servable, servable.regress(signature, examples), []

    def metadata(self, ref: ModelRef, entrypoint: str) -> Servable:
        with self._observed(ref, "metadata", entrypoint):
            return self._get(ref)

    def status(self, ref: ModelRef) -> Dict[int, VersionState]:
        if ref.label is not None:
            return self.store.status(ref.name, self.store.label_version(ref.name, ref.label))
        return self.store.status(ref.name, ref.version)

    def _get(self, ref: ModelRef) -> Servable:
        return self.store.get(ref.name, ref.version, ref.label)


def _texts(examples: List[bytes]) -> Optional[List[str]]:
    from tensorflow.core.example import example_pb2

    texts = []
    for serialized in examples:
        feature = example_pb2.Example.FromString(serialized).features.feature.get(TEXT_FEATURE)
        if feature is None or len(feature.bytes_list.value) != 1:
            return None
        texts.append(feature.bytes_list.value[0].decode("utf-8", errors="replace"))
    return texts


def _rows(inputs: Tensors) -> int:
    for value in inputs.values():
        return int(value.shape[0]) if value.ndim else 1
    return 0
