"""What a run prints in a terminal: a line per step, a progress bar for long work, and the path of a
file holding the full event log.

Dagster's console logger prints every event (~900 lines for the demo, most at DEBUG). This code
location's runs print instead, on stderr, one line per step (assets, days, rows, seconds, the
process's peak memory, checks passed), the warnings and errors once each, and the progress that
long steps report (assets/common.py: Progress). Every record, as Dagster's console would print it,
goes to `$DAGSTER_HOME/logs/<run id>.log`, named on the run's first line. The UI's run page shows
the same events from the instance's event log either way.
"""

import logging
import os
import shutil
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg

from news_ai_assets.assets.common import ProgressReport, format_seconds, peak_rss_mib

WIDTH = 100  # columns of a line, or the terminal's where it is narrower
QUIET_PROGRESS_S = 30.0  # off a terminal (a pipe, a file), a progress line at most this often per step


def event_log_path(run_id: str) -> Path:
    """Where a run's full event log goes: beside the instance, or in the temp folder without one."""
    return Path(os.environ.get("DAGSTER_HOME") or tempfile.gettempdir()) / "logs" / f"{run_id}.log"


@dataclass
class _Step:
    started: float = field(default_factory=time.perf_counter)
    assets: dict[str, None] = field(default_factory=dict)  # in order first seen
    checked: dict[str, None] = field(default_factory=dict)
    days: set[str] = field(default_factory=set)
    rows: int = 0
    checks_passed: int = 0
    checks_failed: int = 0
    last_progress_line: float = 0.0


def _count(value: float, unit: str) -> str:
    return f"{value:,.0f} {unit}" if value != 1 else f"1 {unit.removesuffix('s')}"


def _first_cause(error) -> str:
    """The message of the exception that started a chain (Dagster wraps user errors in its own)."""
    if error is None:
        return "see the event log"
    while error.cause is not None:
        error = error.cause
    return error.message.strip()


class StepLines(logging.Handler):
    """Turns a run's records into the lines described above."""

    def __init__(self, stream=None):
        super().__init__(logging.DEBUG)
        self._stream = stream or sys.stderr
        self._live = self._stream.isatty()
        self._steps: dict[str, _Step] = {}
        self._bar_shown = False

    def emit(self, record: logging.LogRecord) -> None:
        meta = getattr(record, "dagster_meta", None) or {}
        event, step_key = meta.get("dagster_event"), meta.get("step_key")
        if isinstance(getattr(record, "progress", None), ProgressReport):
            self._progress(step_key, record.progress)
        elif event is not None:
            self._event(event, meta)
        elif record.levelno >= logging.WARNING:
            mark = "!" if record.levelno == logging.WARNING else "x"
            self._once(meta.get("run_id"), f"{mark} {meta.get('orig_message', record.getMessage())}")

    def _event(self, event: dg.DagsterEvent, meta: dict) -> None:
        kind, step_key = event.event_type_value, event.step_key
        if kind == "STEP_START":
            self._steps[step_key] = _Step()
        elif kind == "ASSET_MATERIALIZATION" and step_key in self._steps:
            step, materialization = self._steps[step_key], event.event_specific_data.materialization
            step.assets[materialization.asset_key.to_user_string()] = None
            if materialization.partition:
                step.days.add(materialization.partition)
            rows = materialization.metadata.get("dagster/row_count")
            step.rows += rows.value if rows is not None else 0
        elif kind == "ASSET_CHECK_EVALUATION" and step_key in self._steps:
            step, evaluation = self._steps[step_key], event.event_specific_data
            step.checked[evaluation.asset_key.to_user_string()] = None
            if evaluation.partition:
                step.days.add(evaluation.partition)
            step.checks_passed += evaluation.passed
            step.checks_failed += not evaluation.passed
        elif kind == "STEP_SUCCESS" and step_key in self._steps:
            self.say(self._step_line(step_key, self._steps.pop(step_key)))
        elif kind.endswith("_FAILURE"):  # a step's, a resource's or the run's
            self._steps.pop(step_key, None)
            cause = _first_cause(getattr(event.event_specific_data, "error", None))
            self._once(meta.get("run_id"), f"x {step_key or 'run'} failed: {cause}")
        elif kind == "STEP_SKIPPED":
            self.say(f"- {step_key} skipped: an upstream step failed or a blocking check did not pass")

    @staticmethod
    def _step_line(step_key: str, step: _Step) -> str:
        name = ", ".join(step.assets) or (f"checks: {', '.join(step.checked)}" if step.checked else step_key)
        days = _count(len(step.days), "days") if step.days else ""
        if step.assets:
            detail = _count(step.rows, "rows")
        else:
            detail = f"{step.checks_passed}/{step.checks_passed + step.checks_failed} passed"
        return (f"{'x' if step.checks_failed else '✓'} {name:<36} {days:>8} {detail:>14} "
                f"{time.perf_counter() - step.started:7.1f} s   peak {peak_rss_mib() / 1024:.1f} GiB")

    def _progress(self, step_key: str | None, report: ProgressReport) -> None:
        step = self._steps.get(step_key) if step_key else None
        if report.done >= report.total:
            return  # the step's line follows
        if self._live:
            width = min(WIDTH, shutil.get_terminal_size().columns) - 1
            share = report.done / report.total if report.total else 1.0
            left = "" if report.seconds_left is None else f"  {format_seconds(report.seconds_left)} left"
            text = (f"{report.done:,.0f}/{report.total:,.0f} {report.unit}  {report.per_second:,.1f}/s{left}  "
                    f"{report.what}")
            bar_width = max(10, width - len(text) - 8)
            filled = round(bar_width * share)
            self._stream.write("\r\x1b[2K" + f"  [{'█' * filled}{'·' * (bar_width - filled)}] {text}"[:width])
            self._stream.flush()
            self._bar_shown = True
        elif step is None or time.perf_counter() - step.last_progress_line >= QUIET_PROGRESS_S:
            if step is not None:
                step.last_progress_line = time.perf_counter()
            self.say(f"  … {report}")

    def _once(self, run_id: str | None, text: str) -> None:
        if (run_id, text) not in _SAID:  # a warning of every asset that reads the MIND folder, an error said twice
            _SAID.add((run_id, text))
            self.say(text)

    def say(self, text: str) -> None:
        if self._bar_shown:
            self._stream.write("\r\x1b[2K")
            self._bar_shown = False
        width = min(WIDTH, shutil.get_terminal_size().columns) if self._live else WIDTH
        lines = textwrap.wrap(text, width, subsequent_indent="    ", break_on_hyphens=False,
                              break_long_words=False) or [""]  # a path stays whole
        self._stream.write("\n".join(lines) + "\n")
        self._stream.flush()


# Dagster starts a run's loggers more than once: what one of them said about a run stays said.
_ANNOUNCED: set[str | None] = set()
_SAID: set[tuple[str | None, str]] = set()
LEVEL = dg.Field(str, default_value="DEBUG", description="The lowest level of record handled.")


@dg.logger(config_schema={"log_level": LEVEL},
           description="A line per step, progress bars and warnings on stderr; the full log goes to event_log_file.")
def step_lines(init_context: dg.InitLoggerContext) -> logging.Logger:
    lines = StepLines()
    if init_context.run_id not in _ANNOUNCED:
        _ANNOUNCED.add(init_context.run_id)
        lines.say(f"run {init_context.run_id}: a line per step below; every event in "
                  f"{event_log_path(init_context.run_id)}")
    log = logging.Logger("news_ai_assets.console", init_context.logger_config["log_level"])
    log.addHandler(lines)
    return log


@dg.logger(config_schema={"log_level": LEVEL},
           description="Every record of the run, as Dagster's console prints it, in $DAGSTER_HOME/logs/<run id>.log.")
def event_log_file(init_context: dg.InitLoggerContext) -> logging.Logger:
    path = event_log_path(init_context.run_id or "no-run")
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s - %(levelname)s - %(message)s"))
    log = logging.Logger("news_ai_assets.event_log", init_context.logger_config["log_level"])
    log.addHandler(handler)
    return log


RUN_LOGGERS = {"console": step_lines, "event_log_file": event_log_file}
# Dagster starts a job's loggers only when its run config names them: the jobs carry this config.
LOGGER_CONFIG = {"loggers": {name: {} for name in RUN_LOGGERS}}
