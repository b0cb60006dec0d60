"""Let OBS exit cleanly while engine threads may still be busy.

When OBS exits it finalises Python right after the scripts unload. A daemon thread that is still inside
torch at that moment aborts OBS (measured: exit code 134 with a CPU inference in flight). So when OBS shuts
down its scripting, and again from ``atexit`` when Python is finalised, the script waits for the engine's
threads. That includes those a reload left finishing: a stopped engine lets a long CPU frame or model load
run to its end. All hooks share one budget, so OBS never waits longer than ``EXIT_WAIT_S`` in total.
"""
from __future__ import annotations

import atexit
import logging
import threading
import time
from typing import Callable

log = logging.getLogger(__name__)

#: Longest wait at OBS exit; a GPU frame takes milliseconds, a CPU frame or model load seconds.
EXIT_WAIT_S = 60.0
ENGINE_THREAD_PREFIX = "lp-"  # the engine's stage and output threads

_atexit_registered = False
_shutdown_deadline: float | None = None


def engine_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate()
            if t.name.startswith(ENGINE_THREAD_PREFIX) and t is not threading.current_thread() and t.is_alive()]


def join_engine_threads(timeout: float, stop: Callable[[float], bool] | None = None) -> list[str]:
    """Wait for every engine thread to end; returns the names of those still alive.
    ``stop(timeout)`` (the controller's) is called first with what is left of the shutdown budget."""
    global _shutdown_deadline
    if _shutdown_deadline is None:  # one budget for the whole shutdown, however many hooks call this
        _shutdown_deadline = time.perf_counter() + max(0.0, timeout)
    deadline = _shutdown_deadline
    if stop is not None:
        stop(max(0.05, deadline - time.perf_counter()))
    for t in engine_threads():
        t.join(max(0.0, deadline - time.perf_counter()))
    left = [t.name for t in engine_threads()]
    if left:
        log.warning("engine threads still running at OBS shutdown: %s", ", ".join(left))
    return left


def register_atexit() -> None:
    """OBS finalises Python at exit (after every script unloaded): the last chance to join engine threads."""
    global _atexit_registered
    if not _atexit_registered:
        atexit.register(join_engine_threads, EXIT_WAIT_S)
        _atexit_registered = True
