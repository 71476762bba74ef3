"""A SIGINT/SIGTERM received, kept as a flag that streaming loops check.

The CLI's signal handler records the signal here and raises `Interrupted`. Python drops an
exception raised inside a weakref callback, a __del__ or an attribute lookup that C code makes
with errors suppressed (numpy looking up `__array_ufunc__` on an IntEnum member was one), so the
raise alone can be lost and a run would go on to rename its output into place and exit 0. Every
loop that reads or writes blocks, and every rename into place, calls `check()`: an interruption
then stops the run at the next block wherever the first exception landed.
"""

from __future__ import annotations

import signal

_received: int | None = None


class Interrupted(KeyboardInterrupt):
    """A run stopped by a signal; the CLI exits 128 + the signal's number (130, 143)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


def note(signum: int) -> None:
    """Record a signal (the first one wins: it decides the exit status)."""
    global _received
    if _received is None:
        _received = signum


def received() -> int | None:
    """The signal received so far, or None."""
    return _received


def check() -> None:
    """Raise `Interrupted` if a signal was received; cheap enough to call once per block."""
    if _received is not None:
        raise Interrupted(_received)


def reset() -> None:
    """Forget a received signal (tests running several commands in one process)."""
    global _received
    _received = None
