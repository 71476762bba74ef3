"""When a process may be forked, and how a forked one ends with its parent.

Shared by the dataset build's worker pool and the tokenize reader process (tokenize/reader_process).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time

# numpy's BLAS starts its threads when numpy is imported: imported here, so that the count below
# is taken after them whichever module imports this one first.
import numpy  # noqa: F401


def threads() -> int | None:
    """This process's threads, as the kernel counts them (None where /proc cannot tell)."""
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return None


# The threads a process has once our imports are done: a fork is safe while no more have been
# started. A library's thread pool (the tokenizers' Rust pool once a batch was encoded, Arrow's
# readers) would be copied mid-flight, and tokenizers then prints a warning on stdout in each
# child.
THREADS_AT_IMPORT = threads()


def fork_is_safe() -> bool:
    """Linux, and no thread started since import. Fewer is safe too: a thread that was there at
    import (tqdm's monitor, one a library used while loading) may have ended since."""
    count = threads()
    return (
        sys.platform.startswith("linux")
        and count is not None
        and THREADS_AT_IMPORT is not None
        and count <= THREADS_AT_IMPORT
    )


def die_with_parent(parent: int) -> None:
    """End this child when `parent` ends, however it ends: a SIGKILLed parent runs no clean-up,
    and its children would work on (or wait for work) for ever."""
    if sys.platform.startswith("linux"):
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)
    else:  # no parent-death signal: watch for being handed to another parent

        def watch() -> None:
            while os.getppid() == parent:
                time.sleep(0.5)
            os._exit(1)

        threading.Thread(target=watch, name="watch-parent", daemon=True).start()
    if os.getppid() != parent:  # the parent died before the signal was asked for
        os._exit(1)
