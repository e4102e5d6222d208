"""Local scheduler for machines without Kubeflow: retrain on a cron schedule and when
a new span lands, one run at a time, every run recorded in the history.

With ``schedule.feedback_dir``, each tick first turns the model server's corrected
predictions into the next span. A tick then decides whether a run is due: a span newer
than any the history has seen (with ``data.span_pattern``), or a cron time passed since
the last run started, whatever its end (missed times are not caught up one by one: one
run covers them; with no run recorded, since the scheduler first started, as recorded in
``scheduler.started`` beside the history: a ``--once`` from cron counts from its first
call). A span whose runs were killed ``SPAN_ATTEMPTS`` times (an OOM kill, ``kill -9``)
is not tried again until the next cron time. A tick while another run holds the output
root's lock runs nothing (its feedback export still happens). A run the settings checks
refuse (an empty newest span, a missing checkpoint) is the tick's answer (exit 1), and
is tried again after 2, 4, 8... polls, an hour apart at most, not at every poll.
"""
from __future__ import annotations

import dataclasses
import datetime
import logging
import os
import time
from typing import Callable, Optional

from local import history, local_runner, preflight
from pipeline.config import PipelineConfig

NEW_SPAN = "new span"
FIRST_STARTED = "scheduler.started"  # beside the history: when a scheduler first ran
SPAN_ATTEMPTS = 2  # runs of one new span that may be killed before it waits for cron


@dataclasses.dataclass
class Tick:
    action: str  # ran, idle, busy, refused (error: a tick that raised, in loop())
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


def _first_started(history_path: str, now: float) -> float:
    """When a scheduler first started on this history (``now``, recorded, the first
    time): what cron times count from before any run is recorded."""
    path = os.path.join(os.path.dirname(os.path.abspath(history_path)), FIRST_STARTED)
    try:
        with open(path, encoding="utf-8") as f:  # (not after now: a clock once wrong)
            return min(now, datetime.datetime.fromisoformat(f.read().strip()).timestamp())
    except (OSError, ValueError):  # absent (or torn): this is the first start
        pass
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path + ".tmp", "w", encoding="utf-8") as f:
            f.write(_utc(now).isoformat())
        os.replace(path + ".tmp", path)
    except OSError as error:  # a full disk: this scheduler counts from now all the same
        logging.warning("cannot record the scheduler's first start in %s (%s): a --once "
                        "run counts cron times from its own start", path, error)
    return now


REFUSED_MAX_WAIT = 3600  # seconds between tries of a run the settings checks refuse


def _seen_spans(entries: list) -> list:
    """The spans the run history has seen: trained on, or tried as new and ended (a run
    killed on one is tried ``SPAN_ATTEMPTS`` times)."""
    reasons = [e.get("reason", "") for e in entries]
    killed = [r for e, r in zip(entries, reasons) if r.startswith(NEW_SPAN)
              and e.get("status") in (history.RUNNING, history.INTERRUPTED)]
    return [e["span"] for e in entries if e.get("span") is not None] + [
        int(r.rsplit(" ", 1)[1]) for e, r in zip(entries, reasons)  # tried: it ended
        if r.startswith(NEW_SPAN) and (e.get("status", history.FINISHED) == history.FINISHED
                                       or killed.count(r) >= SPAN_ATTEMPTS)]


class Scheduler:
    def __init__(self, config: PipelineConfig, clock: Callable[[], float] = time.time,
                 run: Callable = local_runner.run):
        from croniter import croniter

        cron = config.schedule.cron
        # croniter also takes 6 fields (seconds first, or Quartz's): '0 0 3 * * *' would
        # run at 00:00 on the 3rd, not daily at 03:00.
        if not croniter.is_valid(cron) or (len(cron.split()) != 5
                                           and not cron.startswith("@")):
            raise ValueError(f"schedule.cron '{cron}' is not a 5-field cron expression "
                             "(minute hour day-of-month month day-of-week, UTC), e.g. "
                             "'0 3 * * *', or a shorthand such as @daily")
        try:
            croniter(cron, _utc(clock())).get_next(float)
        except Exception as error:  # noqa: BLE001  croniter's errors differ by version
            raise ValueError(f"schedule.cron '{cron}' never comes: {error}") from None
        self.config, self.clock, self._run = config, clock, run
        local_runner.use_storage(config)  # before the first s3:// access (newest_span)
        self.started = _first_started(config.history_path, clock())
        self._warned: set = set()  # each warning once per scheduler, not every tick
        # (reason, error, refusals, monotonic time before which it is not tried again):
        # the last run refused by the settings checks, tried again less and less often
        self._refused: Optional[tuple] = None

    def due(self) -> Optional[str]:
        """Why a run is due now, or None."""
        from croniter import croniter

        path = self.config.history_path
        entries = self._entries()
        span = newest_span(self.config)
        seen = _seen_spans(entries)
        if span is not None and (not seen or span > max(seen)):
            return f"{NEW_SPAN} {span}"
        if span is not None and span < max(seen) and span not in seen:
            self._warn_once("renumbered", "the newest span (%d) is below the highest the "
                            "run history %s has seen (%d): spans renumbered? New spans are "
                            "detected above %d only (cron runs go on); to start again, move "
                            "the history file aside", span, path, max(seen), max(seen))
        now = self.clock()
        starts = [datetime.datetime.fromisoformat(e["started"]).timestamp() for e in entries]
        if any(start > now for start in starts):
            self._warn_once("future", "run history %s has runs that started in the future "
                            "(a clock that was wrong?): not counted for schedule.cron", path)
        last = max([start for start in starts if start <= now] or [self.started])
        next_time = croniter(self.config.schedule.cron, _utc(last)).get_next(float)
        return "cron" if next_time <= now else None

    def _entries(self) -> list:
        return history.read(self.config.history_path, unfinished=True,  # killed runs too:
                            pipeline=self.config.name)  # no crash loop

    def _warn_once(self, key: str, message: str, *args) -> None:
        if key not in self._warned:
            self._warned.add(key)
            logging.warning(message, *args)

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
        return export_span(schedule.feedback_dir, self.config.data, schedule.feedback_min_rows,
                           model=self.config.output.model_name,
                           after=max(_seen_spans(self._entries()), default=0))

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
        refused = self._refused
        if refused and refused[0] == reason and time.monotonic() < refused[3]:
            return Tick("refused", f"{reason}: refused {refused[2]} time(s), tried again in "
                                   f"{refused[3] - time.monotonic():.0f} s: {refused[1]}", 1)
        try:
            result = self._run(self.config, reason=reason)
        except local_runner.RunInProgress as busy:
            return Tick("busy", str(busy))
        except preflight.SettingsError as error:  # the data or settings must change first
            count = refused[2] + 1 if refused and refused[0] == reason else 1
            wait = min(REFUSED_MAX_WAIT, self.config.schedule.poll_seconds * 2 ** count)
            self._refused = (reason, str(error), count, time.monotonic() + wait)
            logging.error("%s refused by the settings checks (tried again in %d s): %s",
                          reason, wait, error)
            return Tick("refused", f"{reason}: {error}", 1)
        self._refused = None
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
