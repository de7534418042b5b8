"""Plain-line progress with rate and ETA (readable through Ray's log forwarding, unlike \\r bars)."""
from __future__ import annotations

import datetime
import sys
import time


def _clock(seconds: float) -> str:
    return str(datetime.timedelta(seconds=int(seconds)))


class Progress:
    """Prints 'what step/total (pct) | rate | elapsed | ETA' at most every `every_s` seconds."""

    def __init__(self, label: str, total: int, start: int = 0, every_s: float = 5.0, stream=sys.stdout):
        self.label, self.total, self.start, self.every_s, self.stream = label, total, start, every_s, stream
        self.t0 = self.last = time.monotonic()

    def due(self, done: int) -> bool:
        """True when `update(done)` would print (so a caller computes its `extra` text only then)."""
        return time.monotonic() - self.last >= self.every_s or done >= self.total

    def update(self, done: int, extra: str = "", force: bool = False) -> None:
        """Report that `done` of `total` units are finished."""
        now = time.monotonic()
        if not force and now - self.last < self.every_s and done < self.total:
            return
        self.last = now
        elapsed = now - self.t0
        rate = (done - self.start) / elapsed if elapsed > 0 else 0.0
        eta = (self.total - done) / rate if rate > 0 else float("nan")
        eta_text = _clock(eta) if eta == eta else "?"
        pct = 100.0 * done / max(self.total, 1)
        print(
            f"[{self.label}] {done}/{self.total} ({pct:.0f}%) {extra} | {rate:.2f} it/s | "
            f"elapsed {_clock(elapsed)} | ETA {eta_text}",
            file=self.stream,
            flush=True,
        )
