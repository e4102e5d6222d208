"""Local scheduler for machines without Kubeflow: retrain on a cron schedule and when
a new span lands, one run at a time, every run recorded in the history.

With ``schedule.feedback_dir``, each tick first turns the model server's corrected
predictions into the next span. A tick then decides whether a run is due: a span newer than any the history has seen
(with ``data.span_pattern``), or a cron time passed since the last run (missed
times are not caught up one by one: one run covers them). A tick while another run
holds the output root's lock runs nothing (its feedback export still happens).
"""
from __future__ import annotations

import dataclasses
import datetime
import logging
import time
from typing import Callable, Optional

from local import history, local_runner
from pipeline.config import PipelineConfig

NEW_SPAN = "new span"


@dataclasses.dataclass
class Tick:
    action: str  # ran, idle, busy (error: a tick that raised, in loop())
    reason: str
    exit_code: Optional[int] = None


def newest_span(config: PipelineConfig) -> Optional[int]:
    from components.text_example_gen.files import list_spans

    if not config.data.span_pattern:
        return None
    spans = list_spans(config.data.input_dir, config.data.span_pattern)
    return spans[-1][0] if spans else None


def _utc(timestamp: float) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(timestamp, datetime.timezone.utc)


class Scheduler:
    def __init__(self, config: PipelineConfig, clock: Callable[[], float] = time.time,
                 run: Callable = local_runner.run):
        from croniter import croniter

        if not croniter.is_valid(config.schedule.cron):
            raise ValueError(f"schedule.cron '{config.schedule.cron}' is not a valid cron "
                             "expression")
        self.config, self.clock, self._run = config, clock, run
        local_runner.use_storage(config)  # before the first s3:// access (newest_span)
        self.started = clock()

    def due(self) -> Optional[str]:
        """Why a run is due now, or None."""
        from croniter import croniter

        entries = history.read(self.config.history_path)
        span = newest_span(self.config)
        seen = [e["span"] for e in entries if e.get("span") is not None] + [
            int(e["reason"].rsplit(" ", 1)[1]) for e in entries  # tried, even if it failed
            if e.get("reason", "").startswith(NEW_SPAN)]
        if span is not None and (not seen or span > max(seen)):
            return f"{NEW_SPAN} {span}"
        last = max([datetime.datetime.fromisoformat(e["started"]).timestamp()
                    for e in entries] + [self.started])
        next_time = croniter(self.config.schedule.cron, _utc(last)).get_next(float)
        return "cron" if next_time <= self.clock() else None

    def seconds_to_next_cron(self) -> float:
        from croniter import croniter
        return croniter(self.config.schedule.cron, _utc(self.clock())).get_next(float) \
            - self.clock()

    def collect_feedback(self) -> Optional[str]:
        """Corrected predictions from the model server, as the next span (or None)."""
        from local.feedback_span import export_span

        schedule = self.config.schedule
        if not schedule.feedback_dir:
            return None
        return export_span(schedule.feedback_dir, self.config.data, schedule.feedback_min_rows)

    def tick(self) -> Tick:
        try:
            folder = self.collect_feedback()
        except Exception:  # noqa: BLE001 - a failed export must not stop scheduled runs
            logging.exception("feedback export failed: nothing exported, retried next tick")
            folder = None
        if folder:
            logging.warning("feedback written as %s", folder)
        reason = self.due()
        if reason is None:
            return Tick("idle", "no new span and no cron time passed")
        try:
            result = self._run(self.config, reason=reason)
        except local_runner.RunInProgress as busy:
            return Tick("busy", str(busy))
        return Tick("ran", reason, result.exit_code)

    def loop(self, max_ticks: Optional[int] = None) -> None:
        """Ticks until stopped (or ``max_ticks``), sleeping ``schedule.poll_seconds`` or
        until the next cron time in between; one failed tick does not stop the loop."""
        ticks = 0
        while True:
            try:
                tick = self.tick()
            except Exception as error:  # noqa: BLE001 - a daemon outlives one bad tick
                logging.exception("scheduler tick failed")
                tick = Tick("error", f"{type(error).__name__}: {error}")
            print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {tick.action}: {tick.reason}"
                  + (f" (exit {tick.exit_code})" if tick.exit_code is not None else ""),
                  flush=True)
            ticks += 1
            if max_ticks is not None and ticks >= max_ticks:
                return
            time.sleep(max(1.0, min(self.config.schedule.poll_seconds,
                                    self.seconds_to_next_cron())))
