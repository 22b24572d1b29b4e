"""What a run prints (news_ai_assets/run_console.py): in a terminal a progress bar that the step's line
replaces; off a terminal a progress line now and then. The demo's whole output: test_docs.py."""

import io
import logging

import dagster as dg
from dagster._core.events import StepSuccessData

from news_ai_assets.assets.common import ProgressReport
from news_ai_assets.run_console import StepLines


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _record(level: int, event: dg.DagsterEvent | None = None, **extra) -> logging.LogRecord:
    record = logging.makeLogRecord({"levelno": level, "msg": "m"})
    record.dagster_meta = {"dagster_event": event, "step_key": "features__text_embeddings", "run_id": "r",
                           "orig_message": "m"}
    for key, value in extra.items():
        setattr(record, key, value)
    return record


def _step(kind: str) -> logging.LogRecord:
    data = StepSuccessData(duration_ms=1.0) if kind == "STEP_SUCCESS" else None
    return _record(logging.DEBUG, dg.DagsterEvent(kind, "job", step_key="features__text_embeddings",
                                                   event_specific_data=data))


def _progress(done: int) -> logging.LogRecord:
    report = ProgressReport("texts embedded", done, 2_500, "texts", 120.0, (2_500 - done) / 120)
    return _record(logging.INFO, progress=report)


def test_in_a_terminal_a_bar_shows_progress_and_the_steps_line_replaces_it():
    terminal = Terminal()
    lines = StepLines(terminal)
    for record in (_step("STEP_START"), _progress(1_000), _progress(2_048), _step("STEP_SUCCESS")):
        lines.emit(record)
    out = terminal.getvalue()
    bars = out.split("\r\x1b[2K")
    assert bars[1].startswith("  [") and "1,000/2,500 texts" in bars[1] and "12 s left" in bars[1]
    assert "█" * 5 in bars[2] and "2,048/2,500 texts" in bars[2] and bars[2].endswith("texts embedded")  # whole
    assert bars[-1].startswith("✓ features__text_embeddings") and bars[-1].endswith("GiB\n")
    assert "\n" not in "".join(bars[:-1])  # the bar redraws one line


def test_off_a_terminal_progress_is_a_line_now_and_then():
    pipe = io.StringIO()
    lines = StepLines(pipe)
    for record in (_step("STEP_START"), _progress(1_000), _progress(2_048), _step("STEP_SUCCESS")):
        lines.emit(record)
    out = pipe.getvalue().splitlines()
    assert out[0] == "  … texts embedded: 1,000 of 2,500 texts (40%), 120.0 texts/s, 12 s left"
    assert len(out) == 2 and out[1].startswith("✓ features__text_embeddings")  # the second report within 30 s: not shown


def test_a_warning_is_said_once_and_wrapped_to_100_columns():
    pipe = io.StringIO()
    lines = StepLines(pipe)
    warning = _record(logging.WARNING)
    warning.dagster_meta["orig_message"] = "NEWS_AI_MIND_DIR is not set: " + "a long explanation " * 10
    lines.emit(warning)
    lines.emit(warning)
    out = pipe.getvalue().splitlines()
    assert out[0].startswith("! NEWS_AI_MIND_DIR is not set") and max(map(len, out)) <= 100
    assert sum(line.startswith("!") for line in out) == 1 and all(line.startswith("    ") for line in out[1:])
