"""How a command ends: the documented exit statuses, and leaving the process safely.

Every command ends with one of the statuses below, never with a signal. Python (3.11 and older) ends a
daemon thread that is still inside a native call when the interpreter exits by unwinding it through C++
code, which aborts the whole process ("terminate called without an active exception", SIGABRT, exit 134).
The engine joins its threads on stop, but one network (or one step of the model load) cannot be interrupted; ``leave``
is the last resort for that case: it flushes what was printed and ends the process with ``os._exit``,
which skips the interpreter's teardown. Recordings are finalised before (the engine joins its outputs
first), so nothing is lost.
"""
from __future__ import annotations

import logging
import os
import sys
import threading

OK = 0  #: the command did what it was asked (frames came out, the input ended, --duration, Q)
ERROR = 1  #: it could not (missing weights, no input, no frame produced...): the message says why
USAGE = 2  #: bad arguments, settings or file names: nothing was started
INTERRUPTED = 130  #: Ctrl-C (SIGINT); a recording in progress is finalised
TERMINATED = 143  #: SIGTERM; a recording in progress is finalised

#: For ``--help`` and docs/TROUBLESHOOTING.md.
HELP = (f"exit status: {OK} done, {ERROR} error (the message says why), {USAGE} bad arguments or settings, "
        f"{INTERRUPTED} interrupted with Ctrl-C, {TERMINATED} terminated (SIGTERM); "
        "a recording in progress is always finalised")

_log = logging.getLogger(__name__)


def busy_threads() -> list[threading.Thread]:
    """Daemon threads still running: the interpreter must not tear down under them."""
    return [t for t in threading.enumerate()
            if t.daemon and t.is_alive() and t is not threading.main_thread()]


def leave(code: int) -> int:
    """Return ``code`` for a normal exit when no daemon thread is left; otherwise flush and end the process at
    once with ``code`` (see the module doc). Call it only where the process ends (the command line's main)."""
    busy = busy_threads()
    if not busy:
        return code
    _log.debug("exiting with %s still running: ending the process without interpreter teardown",
               ", ".join(t.name for t in busy))
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe must not change the status
            pass
    os._exit(code)
