"""What the demo shows a person while it works: folds and rounds as they complete.

On a terminal the current round rewrites one line; elsewhere (CI logs, pipes) every
completed fold and every fifth round gets its own line, so logs stay short. The display
only prints: it never decides anything, and writes to the stream it is given.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import TextIO

ROUND_EVERY = 5


class Progress:
    """Prints progress lines; safe to call from the federation and baseline threads."""

    def __init__(self, stream: TextIO | None = None, *, folds: int) -> None:
        self.stream = stream or sys.stdout
        self.folds = folds
        self.started = time.perf_counter()
        self.live = self.stream.isatty()
        self._lock = threading.Lock()
        self._pending_line = False

    def _elapsed(self) -> str:
        return f"{time.perf_counter() - self.started:6.1f}s"

    def _write(self, text: str, *, transient: bool = False) -> None:
        with self._lock:
            if self._pending_line:
                self.stream.write("\r\033[K" if self.live else "\n")
            self.stream.write(f"[{self._elapsed()}] {text}")
            self._pending_line = transient and self.live
            if not self._pending_line:
                self.stream.write("\n")
            self.stream.flush()

    def note(self, text: str) -> None:
        self._write(text)

    def round_completed(
        self, *, label: str, round_number: int, rounds: int, loss: float | None
    ) -> None:
        shown = f"train loss {loss:.4f}" if loss is not None else ""
        text = f"{label}: round {round_number}/{rounds} {shown}".rstrip()
        if self.live:
            self._write(text, transient=True)
        elif round_number % ROUND_EVERY == 0 or round_number == rounds:
            self._write(text)

    def fold_completed(self, *, label: str, summary: str) -> None:
        self._write(f"{label}: done, {summary}")
