"""Read, check and render the input in a forked child process, handing the batches back in order.

Rendering chat conversations is Python work that holds the GIL (jinja's sandbox, the typing of
each turn): in the pipeline's reader thread it took most of the GIL's time, and the encoders,
packing and writing waited for it. In a child it runs on a core of its own. The batches it
makes are the ones the reader thread would make (read.batches, in the same order), so the output
is the same byte for byte; only where they are made changes.

The child is forked before the pipeline starts a thread, and only where a fork is safe
(processes.fork_is_safe); it writes nothing but the pipe to its parent, ignores Ctrl-C (the
parent stops it), and dies with the parent.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import signal
import sys
import threading
import traceback
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from tokentype_cli import processes
from tokentype_cli.errors import TokentypeError
from tokentype_cli.tokenize.read import Batch

_PIPE_BUFFER = 1 << 20


@dataclass
class _End:
    """The child's last message: None when every batch was sent, else the error that stopped
    it."""

    error: BaseException | None


class ReaderProcess:
    """The batches `produce()` makes, made in a child forked now.

    Iterate it once (from any thread); close it (or use it as a context manager) to stop the
    child, whether or not every batch was taken. `advance(nbytes)` is called in the parent as
    each batch arrives (read.batches' own `advance` runs in the child, where no one sees it).
    """

    def __init__(
        self,
        produce: Callable[[], Iterable[Batch]],
        advance: Callable[[int], None] = lambda n: None,
    ) -> None:
        self.advance = advance
        self.status: int | None = None  # the child's exit code once reaped (-N: signal N)
        self._closing = False
        self._lock = threading.Lock()
        read_end, write_end = os.pipe()
        parent = os.getpid()
        # Blocked across the fork: the child has the CLI's handlers until it puts its own in,
        # and a signal to the process group meanwhile would raise there. It is delivered once
        # unblocked, to the parent's handler and to the child's.
        stopping = {signal.SIGINT, signal.SIGTERM}
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, stopping)
        try:
            pid = os.fork()
        except BaseException:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
            os.close(read_end)
            os.close(write_end)
            raise
        if pid == 0:  # pragma: no cover (runs in the child, which ends with os._exit)
            os.close(read_end)
            _child(produce, write_end, parent, mask)
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        os.close(write_end)
        self.pid = pid
        self._source = open(read_end, "rb", buffering=_PIPE_BUFFER)  # noqa: SIM115 (closed by close())

    def __iter__(self) -> Iterator[Batch]:
        source = self._source
        while True:
            try:
                item = pickle.load(source)
            except EOFError:
                break
            except (OSError, ValueError):  # closed by close() from another thread
                if self._closing:
                    return
                raise
            if isinstance(item, _End):
                self._reap()
                if item.error is not None:
                    raise item.error
                return
            self.advance(item.nbytes)
            yield item
        if self._closing:
            return
        self._reap()
        raise TokentypeError(
            f"the process reading and rendering the input ended before it was done"
            f" ({_how_it_ended(self.status)}); nothing was written: run the command again"
        )

    def close(self) -> None:
        """Stop the child (it writes no file: there is nothing to clean up) and wait for it."""
        self._closing = True
        if self.status is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
            self._reap()
        self._source.close()

    def _reap(self) -> None:
        with self._lock:  # the reading thread and close() may both get here
            if self.status is None:
                _, status = os.waitpid(self.pid, 0)
                self.status = os.waitstatus_to_exitcode(status)

    def __enter__(self) -> ReaderProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _how_it_ended(code: int | None) -> str:
    if code is None or code >= 0:
        return f"exit status {code}"
    name = signal.Signals(-code).name
    memory = "; out of memory?" if -code == signal.SIGKILL else ""
    return f"killed by {name}{memory}"


def _child(
    produce: Callable[[], Iterable[Batch]], write_end: int, parent: int, mask: set
) -> None:  # pragma: no cover (coverage does not follow a fork)
    """Send every batch, then _End; never returns."""
    code = 0
    try:
        processes.die_with_parent(parent)
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops us and says so once
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        with open(write_end, "wb", buffering=_PIPE_BUFFER) as out:
            try:
                for batch in produce():
                    pickle.dump(batch, out, protocol=pickle.HIGHEST_PROTOCOL)
                    out.flush()  # each batch as soon as it is made, as the reader thread would
                end = _End(None)
            except BrokenPipeError:
                raise
            except BaseException as exc:  # handed to the parent, which raises it
                end = _End(_portable(exc))
            pickle.dump(end, out, protocol=pickle.HIGHEST_PROTOCOL)
    except BrokenPipeError:
        pass  # the parent stopped reading: it has what it wants, or is stopping
    except BaseException:
        code = 1
        traceback.print_exc(file=sys.stderr)
    finally:
        os._exit(code)  # no atexit handlers, no flushing of the parent's buffers


def _portable(exc: BaseException) -> BaseException:
    """`exc`, as it can cross the pipe: a bug's traceback goes with it, as a note."""
    if not isinstance(exc, (TokentypeError, OSError)):
        exc.add_note("".join(traceback.format_exception(exc)).rstrip())
    try:
        pickle.loads(pickle.dumps(exc))
    except Exception:
        error = TokentypeError if isinstance(exc, TokentypeError) else RuntimeError
        return error(f"{type(exc).__name__}: {exc}")
    return exc
