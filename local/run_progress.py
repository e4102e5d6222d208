"""A line on stderr when each component of a local run starts and ends, with its time.

Tested end to end: tests/e2e/test_progress.py.

LocalDagRunner logs "Component X is running." and "... is finished." (absl, INFO)
around each component. While a run lasts, a filter on absl's logger turns those two
records into progress lines and drops every other record below the level the logger
had (so a quiet run stays quiet and ``--verbose`` still shows everything).
"""
from __future__ import annotations

import contextlib
import logging
import sys
import time
from typing import Callable, Optional, TextIO

RUNNING = "Component %s is running."  # tfx.orchestration.local.local_dag_runner
FINISHED = "Component %s is finished."
CACHED = "A cached execution %d is used."  # tfx.orchestration.portable.launcher


class ComponentProgress(logging.Filter):
    """Prints ``[  12.3s] Trainer started`` and ``[ 262.0s] Trainer complete in 249.6s``
    (elapsed since the run started); passes on records at ``threshold`` or above."""

    def __init__(self, threshold: int, stream: Optional[TextIO] = None,
                 clock: Callable[[], float] = time.monotonic):
        super().__init__()
        self.threshold, self.stream, self.clock = threshold, stream, clock
        self.started = clock()
        self.current: Optional[str] = None
        self.current_started, self.cached = 0.0, False

    def _print(self, text: str) -> None:
        print(f"[{self.clock() - self.started:6.1f}s] {text}", file=self.stream or sys.stderr,
              flush=True)

    def filter(self, record: logging.LogRecord) -> bool:
        if record.msg == RUNNING and record.args:
            self.current, self.current_started, self.cached = record.args[0], self.clock(), False
            self._print(f"{self.current} started")
        elif record.msg == CACHED:
            self.cached = True
        elif record.msg == FINISHED and record.args:
            self.end("cached" if self.cached else "complete")
        return record.levelno >= self.threshold

    def end(self, status: str) -> None:
        """The line for the running component, ended with ``status``."""
        if self.current is not None:
            self._print(f"{self.current} {status} in "
                        f"{self.clock() - self.current_started:.1f}s")
            self.current = None


@contextlib.contextmanager
def component_progress(stream: Optional[TextIO] = None):
    """Progress lines for the LocalDagRunner run inside the block; a component that
    raises is reported as failed."""
    from absl import logging as absl_logging

    logger = logging.getLogger("absl")
    verbosity = absl_logging.get_verbosity()
    progress = ComponentProgress(logger.getEffectiveLevel(), stream)
    logger.addFilter(progress)
    # absl's verbosity, not the logger's level: TensorFlow mutes absl while it saves a
    # model and then restores the verbosity it read (an INFO the filter needs)
    absl_logging.set_verbosity(max(verbosity, absl_logging.INFO))
    try:
        yield progress
    except BaseException:
        progress.end("failed")
        raise
    finally:
        logger.removeFilter(progress)
        absl_logging.set_verbosity(verbosity)
