"""How a command stops on SIGTERM (a service manager, ``timeout``) and Ctrl-C.

Both end the command through an exception, so ``finally`` blocks run and private temporary files
and scratch folders are removed. One place must not get that exception: the hooks Python runs
around a ``fork()`` (``logging`` releases its lock in one). An exception raised there is printed
as "Exception ignored in: <function _releaseLock>" with a traceback and then dropped, and the
command runs on as if nothing had asked it to stop. Found when SIGTERM met ``watch`` starting a
meter process. A signal that arrives while this process forks is therefore held and delivered
again just after the fork, from a short-lived thread.
"""

from __future__ import annotations

import os
import signal
import threading
import time

#: Signals that asked this process to stop (SIGTERM, SIGINT), in order.
SIGNALLED: list[int] = []

#: How long a signal held during a fork waits before it is sent again: a fork's hooks take
#: microseconds; the margin keeps the second delivery out of any hook that runs after ours.
REDELIVER_AFTER = 0.02

_forking = threading.local()
_held: list[int] = []
_installed = False


def install() -> None:
    """Install the handlers for this (the main) process, and the fork hooks that hold a signal."""
    global _installed
    signal.signal(signal.SIGTERM, _terminate(os.getpid()))
    signal.signal(signal.SIGINT, _interrupt)
    # Registered after ``logging`` registered its own: "before" hooks run in reverse order of
    # registration (ours first), "after" hooks in order (ours last), so ours enclose its lock.
    if not _installed:
        _installed = True
        os.register_at_fork(before=_fork_begins, after_in_parent=_fork_ended, after_in_child=_fork_ended_in_child)


def _fork_begins() -> None:
    _forking.now = True


def _fork_ended() -> None:
    _forking.now = False
    if _held:
        threading.Thread(target=_send_again, args=(threading.main_thread().ident,), daemon=True).start()


def _fork_ended_in_child() -> None:
    _forking.now = False
    _held.clear()


def _send_again(thread_id: int) -> None:
    time.sleep(REDELIVER_AFTER)  # also collects a signal held while this thread started
    if _held:
        signum = _held[-1]
        _held.clear()
        signal.pthread_kill(thread_id, signum)


# Our own hooks, also in the instant before ``_fork_begins`` has marked the fork.
_HOOK_CODE = {f.__code__ for f in (_fork_begins, _fork_ended, _fork_ended_in_child)}


def _hold(signum: int, frame) -> bool:
    """Whether the signal must wait for the end of a fork (it is then sent again after it)."""
    if getattr(_forking, "now", False) or (frame is not None and frame.f_code in _HOOK_CODE):
        _held.append(signum)
        return True
    return False


def _interrupt(signum, frame):
    """Ctrl-C: as Python's own handler (``KeyboardInterrupt``), remembered for ``main``."""
    if _hold(signum, frame):
        return
    SIGNALLED.append(signum)
    raise KeyboardInterrupt


def _terminate(main_pid: int):
    """SIGTERM ends the command like Ctrl-C does. A forked helper (a meter, a scan worker)
    inherits this handler and just dies, as it would without it."""
    def handler(signum, frame):
        if os.getpid() != main_pid:
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        if _hold(signum, frame):
            return
        SIGNALLED.append(signum)
        raise SystemExit(128 + signum)
    return handler
