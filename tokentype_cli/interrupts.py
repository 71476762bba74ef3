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
# Set when the exception a handler raised was swallowed; cleared when one is raised for certain.
_redelivery_wanted = False


class Interrupted(SystemExit):
    """A run stopped by a signal: exit status 128 + its number (130 for SIGINT, 143 for SIGTERM).

    A SystemExit, so `except Exception` never catches it and context managers still remove
    temporaries on the way out.
    """

    def __init__(self, signum: int) -> None:
        super().__init__(128 + signum)
        self.signum = signum

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name


def note(signum: int) -> int:
    """Record a signal (the first one wins: it decides the exit status); return the first one."""
    global _received
    if _received is None:
        _received = signum
    return _received


def received() -> int | None:
    """The signal received so far, or None."""
    return _received


def check() -> None:
    """Raise `Interrupted` if a signal was received; cheap enough to call once per block."""
    if _received is not None:
        raised()
        raise Interrupted(_received)


def want_redelivery() -> None:
    """The handler's exception was swallowed: raise it again from outside (see cli.base)."""
    global _redelivery_wanted
    _redelivery_wanted = True


def redelivery_wanted() -> bool:
    return _redelivery_wanted


def raised() -> None:
    """An `Interrupted` is on its way up: a pending redelivery would only cut clean-up short."""
    global _redelivery_wanted
    _redelivery_wanted = False


def reset() -> None:
    """Forget a received signal (tests running several commands in one process)."""
    global _received
    _received = None
    raised()
