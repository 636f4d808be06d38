"""Per-stage timing and progress lines on stderr."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager


class StageClock:
    """Times named stages and prints one progress line per stage (with a rate where a stage
    notes ``rows``).

    >>> clock = StageClock(echo=False)
    >>> with clock.stage("ingest") as note:
    ...     note(rows=3)
    >>> sorted(clock.seconds), clock.notes["ingest"]
    (['ingest'], {'rows': 3})
    """

    def __init__(self, echo: bool = True) -> None:
        self.echo = echo
        self.seconds: dict[str, float] = {}
        self.notes: dict[str, dict[str, object]] = {}

    def say(self, text: str) -> None:
        if self.echo:
            print(f"[dedup] {text}", file=sys.stderr, flush=True)

    @contextmanager
    def stage(self, name: str) -> Iterator:
        notes: dict[str, object] = {}
        started = time.perf_counter()
        self.say(f"{name}: started")
        yield lambda **kw: notes.update(kw)
        elapsed = time.perf_counter() - started
        self.seconds[name] = round(elapsed, 3)
        self.notes[name] = notes
        detail = ", ".join(f"{k}={v}" for k, v in notes.items())
        if isinstance(notes.get("rows"), int) and elapsed > 0:
            detail += f", {notes['rows'] / elapsed:,.0f} rows/s"
        self.say(f"{name}: done in {elapsed:.1f}s" + (f" ({detail})" if detail else ""))
