"""What both transports do with a request: find the version, run it, count it.

Tested with a model server: tests/serving/test_server.py.
"""
from __future__ import annotations

import dataclasses
import logging
import time
import weakref
from contextlib import contextmanager
from typing import Dict, Iterator, List, Optional, Tuple

import numpy as np

from serving.contract import (ASSETS_EXTRA, INPUT_CONTRACT, LABEL_SET, MODEL_INFO_FILE,
                              REDACT_SIGNATURE, TEXT_FEATURE, TEXT_INPUT,
                              TEXT_PAIR_FEATURE)
from serving.deadlines import Deadline
from serving.drain import Drain
from serving.errors import ServingError
from serving.metrics import Metrics
from serving.model_store import ModelStore, VersionState
from serving.servable import Servable, SignatureNotFound, Tensors

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class ModelRef:
    """Which model a request names: latest version, a version, or a version label."""

    name: str
    version: Optional[int] = None
    label: Optional[str] = None


def _redacts(version_path: str) -> bool:
    """Whether a version's redaction (model_info.json's input privacy) redacts anything,
    read as the pipeline reads privacy.redact ("all", "none", or types, any case, comma-
    separated or a list); a model without that record (not this pipeline's) is taken at
    its signature."""
    import json
    import os

    import tensorflow as tf
    path = os.path.join(version_path, ASSETS_EXTRA, MODEL_INFO_FILE)
    try:
        with tf.io.gfile.GFile(path) as f:
            info = json.load(f)
    except (tf.errors.NotFoundError, ValueError):
        return True
    privacy = info.get(INPUT_CONTRACT) if isinstance(info, dict) else None
    privacy = privacy.get("privacy") if isinstance(privacy, dict) else None
    if not isinstance(privacy, dict):
        return True  # no record of the run's settings
    types = privacy.get("redact", "all")
    types = types.split(",") if isinstance(types, str) else types if isinstance(
        types, list) else []
    types = [str(t).strip().lower() for t in types if str(t).strip()]
    return bool(types and types != ["none"]) or bool(privacy.get("custom_patterns"))


class Service:
    def __init__(self, store: ModelStore, metrics: Optional[Metrics] = None,
                 feedback=None):
        self.store = store
        self.metrics = metrics or Metrics()
        self.feedback = feedback  # serving.feedback.FeedbackLog, when recording is on
        self._unredactable: set = set()  # (model, version) without redact_text: warned
        # whether each loaded servable's redact_text redacts (a reloaded folder: again)
        self._redacting: "weakref.WeakKeyDictionary[Servable, bool]" = \
            weakref.WeakKeyDictionary()
        self.drain = Drain()  # readiness and requests in flight (serving/drain.py)

    def count(self, model: str, status: str) -> None:
        """request_count for ``model`` (a name no configured model has counts as "": a
        caller's names must not grow the metrics without end)."""
        self.metrics.count(self._label(model), status)

    def _label(self, model: str) -> str:
        return model if self.store.is_configured(model) else ""

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
            if entrypoint == "GRPC" and api in ("predict", "classify", "regress"):
                api = api.capitalize()  # TF Serving's gRPC names: Predict, Classify, Regress
            self.metrics.observe(self._label(ref.name), api, entrypoint, status,
                                 time.perf_counter() - started, rows)
            if api == "metadata":  # the transports count Predict, Classify and Regress
                self.count(ref.name, status)

    def predict(self, ref: ModelRef, signature: str, inputs: Tensors, entrypoint: str,
                output_filter: Optional[List[str]] = None, deadline: Deadline = None):
        """``(servable, signature key, outputs)``; a run past ``deadline`` is cancelled
        (DEADLINE_EXCEEDED), as for classify and regress."""
        rows = _rows(inputs)
        with self._observed(ref, "predict", entrypoint, rows):
            servable = self._get(ref)
            key, _ = servable.signature(signature)
            return servable, key, servable.run(key, inputs, output_filter, deadline)

    def classify(self, ref: ModelRef, signature: str, examples: List[bytes], entrypoint: str,
                 deadline: Deadline = None):
        """``(servable, rows of (label, score), prediction ids)``; ids only when feedback
        recording is on, every example has a ``text`` feature and the model can redact
        them (see ``_record``)."""
        with self._observed(ref, "classify", entrypoint, len(examples)):
            servable = self._get(ref)
            rows = servable.classify(signature, examples, deadline)
        ids: List[str] = []
        found = _texts(examples) if self.feedback is not None else None
        if found is not None:
            ids = self._record(servable, *found, rows)
        elif self.feedback is not None and (servable.name, servable.version, "text") \
                not in self._unredactable:  # e.g. a model trained on several text columns
            self._unredactable.add((servable.name, servable.version, "text"))
            log.warning("feedback not recorded for model '%s' version %d: its examples have "
                        "no single '%s' feature (a model served by text columns is not "
                        "recorded)", servable.name, servable.version, TEXT_FEATURE)
        return servable, rows, ids

    def _record(self, servable: Servable, texts: List[str], pairs: Optional[List[str]],
                rows) -> List[str]:
        """Stores the texts (and pairs) as the model's ``redact_text`` signature redacts
        them; a model without it records nothing (raw text is never stored), once logged."""
        try:
            servable.signature(REDACT_SIGNATURE)
            if servable not in self._redacting:  # read once per loaded servable
                self._redacting[servable] = _redacts(servable.path)
            why = None if self._redacting[servable] else (
                "it was trained with privacy.redact none, so its '%s' signature returns the "
                "text as it came")
        except SignatureNotFound:
            why = ("it has no '%s' signature (export it with this project's pipeline, with "
                   "redaction on)")
        if why:
            if (servable.name, servable.version) not in self._unredactable:
                self._unredactable.add((servable.name, servable.version))
                log.warning("feedback not recorded for model '%s' version %d: " + why +
                            ", and raw text is never stored", servable.name,
                            servable.version, REDACT_SIGNATURE)
            return []
        try:  # best effort: the prediction is answered whatever recording meets
            # texts and pairs apart: each has the request's rows, which the batcher took
            redacted_texts, redacted_pairs = (
                None if part is None else
                [v.decode("utf-8", errors="replace") for v in servable.run(
                    REDACT_SIGNATURE, {TEXT_INPUT: np.array(part, dtype=object)})[TEXT_INPUT]]
                for part in (texts, pairs or None))
            multi_label = any(LABEL_SET in s.outputs for s in servable.signature_defs.values())
            return self.feedback.record(servable.name, servable.version, redacted_texts, rows,
                                        redacted_pairs, multi_label)
        except Exception as error:  # noqa: BLE001  an OSError is logged by the feedback log
            self.metrics.feedback_dropped.labels(servable.name).inc(len(texts))
            if not isinstance(error, OSError):  # its type only: a message may quote text
                log.error("feedback not recorded for model '%s' version %d: %s %s",
                          servable.name, servable.version, type(error).__name__,
                          error.code.name if isinstance(error, ServingError) else "")
            return []

    def regress(self, ref: ModelRef, signature: str, examples: List[bytes], entrypoint: str,
                deadline: Deadline = None):
        with self._observed(ref, "regress", entrypoint, len(examples)):
            servable = self._get(ref)
            return servable, servable.regress(signature, examples, deadline), []

    def metadata(self, ref: ModelRef, entrypoint: str) -> Servable:
        with self._observed(ref, "metadata", entrypoint):
            self.drain.check_ready()  # metadata is the readiness probe's path
            return self._get(ref)

    def status(self, ref: ModelRef) -> Dict[int, VersionState]:
        """A version's state, or every version's; a label is ignored, as TF Serving does."""
        return self.store.status(ref.name, ref.version)

    def _get(self, ref: ModelRef) -> Servable:
        return self.store.get(ref.name, ref.version, ref.label)


def _texts(examples: List[bytes]) -> Optional[Tuple[List[str], Optional[List[str]]]]:
    """(texts, pairs): every example's ``text``, and ``text_pair`` when every example has
    one (else None); None when an example has no single ``text``."""
    from tensorflow.core.example import example_pb2

    def value(feature) -> Optional[str]:
        if feature is None or len(feature.bytes_list.value) != 1:
            return None
        return feature.bytes_list.value[0].decode("utf-8", errors="replace")

    texts, pairs = [], []
    for serialized in examples:
        found = example_pb2.Example.FromString(serialized).features.feature
        texts.append(value(found.get(TEXT_FEATURE)))
        pairs.append(value(found.get(TEXT_PAIR_FEATURE)))
    if None in texts:
        return None
    return texts, None if None in pairs else pairs


def _rows(inputs: Tensors) -> int:
    for value in inputs.values():
        return int(value.shape[0]) if value.ndim else 1
    return 0
