"""A plain-text progress bar on stderr: records done of total, rate and ETA, redrawn in place on a terminal."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO

WIDTH = 24
TTY_INTERVAL_S = 0.1
# A log file gets one line every few seconds instead of a redraw per batch.
LOG_INTERVAL_S = 2.0


def clock_text(seconds: float) -> str:
    seconds = max(int(seconds + 0.5), 0)
    minutes, secs = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class ProgressBar:
    def __init__(self, label: str, total: int, stream: TextIO | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.label = label
        self.total = max(total, 0)
        self.stream = stream or sys.stderr
        self.clock = clock
        self.started = clock()
        self.done = 0
        self._drawn_at: float | None = None
        self._drawn_done = -1
        self._tty = self.stream.isatty()

    def line(self) -> str:
        elapsed = max(self.clock() - self.started, 1e-9)
        rate = self.done / elapsed
        fraction = self.done / self.total if self.total else 1.0
        filled = int(WIDTH * min(fraction, 1.0))
        return (
            f"{self.label} [{'#' * filled}{'.' * (WIDTH - filled)}] {self.done:,}/{self.total:,} records"
            f"  {rate:,.0f} rec/s  ETA {self._eta(rate)}"
        )

    def _eta(self, rate: float) -> str:
        if self.done >= self.total:
            return "0:00"
        return clock_text((self.total - self.done) / rate) if rate > 0 else "--:--"

    def update(self, done: int) -> None:
        self.done = min(done, self.total)
        now = self.clock()
        interval = TTY_INTERVAL_S if self._tty else LOG_INTERVAL_S
        if self._drawn_at is None or now - self._drawn_at >= interval:
            self._draw(final=False)
            self._drawn_at = now

    def finish(self) -> None:
        self.done = self.total
        if self._tty or self._drawn_done != self.total:  # a log already holding the final line gets no copy
            self._draw(final=True)

    def _draw(self, final: bool) -> None:
        self._drawn_done = self.done
        if self._tty:
            self.stream.write("\r\x1b[K" + self.line() + ("\n" if final else ""))
        else:
            self.stream.write(self.line() + "\n")
        self.stream.flush()
