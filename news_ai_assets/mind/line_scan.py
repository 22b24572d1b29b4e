"""An independent count of a file's lines, so that none can vanish between the file and the tables.

DuckDB's CSV reader silently skips some input (a line of 32 MB or more, a file of NUL bytes with no
newline). The reader therefore counts the file's lines itself, byte by byte, and checks that every
non-blank line came out as a row or a reject. A line ends at "\\n", "\\r\\n" or a lone "\\r", as
it does for DuckDB's reader; a blank line is one with no bytes at all. Lines longer than the
reader's maximum are reported here, with their line numbers, as the rejects they are.
"""

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

CHUNK_BYTES = 64 * 1024 * 1024
LF, CR = 10, 13


@dataclass
class LineScan:
    lines: int = 0  # every line, blank ones included
    blank: int = 0
    overlong: list[tuple[int, int, int]] = field(default_factory=list)  # (line number, byte offset, length)

    @property
    def nonblank(self) -> int:
        return self.lines - self.blank


def scan_lines(path: Path, max_line_bytes: int) -> LineScan:
    """Counts the lines of `path` and finds those longer than `max_line_bytes` (terminator excluded)."""
    scan = LineScan()
    line_start = 0  # byte offset where the current line starts
    offset = 0  # byte offset of the chunk
    pending_cr = False  # the previous chunk ended with "\r": a "\n" starting this one belongs to it

    def close_lines(ends: np.ndarray, next_starts: np.ndarray) -> None:
        nonlocal line_start
        starts = np.concatenate(([line_start], next_starts[:-1]))
        lengths = ends - starts
        for index in np.flatnonzero(lengths > max_line_bytes):
            scan.overlong.append((scan.lines + int(index) + 1, int(starts[index]), int(lengths[index])))
        scan.blank += int(np.count_nonzero(lengths == 0))
        scan.lines += len(ends)
        line_start = int(next_starts[-1])

    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK_BYTES):
            data = np.frombuffer(chunk, dtype=np.uint8)
            if pending_cr and data[0] == LF:
                data, offset, line_start = data[1:], offset + 1, line_start + 1
            breaks = np.flatnonzero((data == LF) | (data == CR))
            if len(breaks):
                is_cr = data[breaks] == CR
                followed_by_lf = np.zeros(len(breaks), dtype=bool)
                followed_by_lf[:-1] = is_cr[:-1] & (breaks[1:] == breaks[:-1] + 1) & ~is_cr[1:]
                joined = np.zeros(len(breaks), dtype=bool)  # the "\n" of a "\r\n"
                joined[1:] = followed_by_lf[:-1]
                ends = breaks[~joined]
                widths = np.where(followed_by_lf[~joined], 2, 1)
                close_lines(offset + ends, offset + ends + widths)
            pending_cr = bool(len(data)) and data[-1] == CR
            offset += len(data)
    if offset > line_start:  # a last line without a terminator
        close_lines(np.array([offset]), np.array([offset]))
    return scan


def line_head(path: Path, start: int, length: int, keep: int = 1000) -> str:
    """The first `keep` bytes of a line, as text, for a reject's raw_line."""
    with open(path, "rb") as handle:
        handle.seek(start)
        head = handle.read(min(length, keep)).decode("utf-8", errors="replace")
    return head + (f"… ({length:,} bytes)" if length > keep else "")
