"""Runs one output on its own thread, so that a slow or failing output never stalls the others.

The publish stage hands each runner the newest frame through a ``LatestValue`` (lossless when the
engine processes a file into a recording). A failure in ``open`` or ``send`` is counted, logged,
shown in the status and retried with exponential backoff; ``OutputUnavailable`` (missing package,
wrong OS) is reported once and not retried.
"""
from __future__ import annotations

import logging
import threading
import time

from liveportrait_core.engine.handoff import EndOfStream, LatestValue
from liveportrait_core.outputs.base import Output, OutputUnavailable, PublishedFrame
from liveportrait_core.engine.stats import OutputStatus, StageTimer

_log = logging.getLogger(__name__)

_POLL_S = 0.1  #: how often an idle runner checks for stop/disable
DEFAULT_BACKOFF_S = (0.5, 30.0)  #: first and longest wait before retrying a failed output


class OutputRunner:
    """Owns one output's thread: open, send every frame it is given, retry on failure, close."""

    def __init__(self, output: Output, *, lossless: bool = False, enabled: bool = True,
                 backoff_s: tuple[float, float] | None = None) -> None:
        self.output = output
        self.name = output.name
        self.frames: LatestValue[PublishedFrame | EndOfStream] = LatestValue(f"output:{self.name}",
                                                                             lossless=lossless)
        self.backoff_s = backoff_s or DEFAULT_BACKOFF_S
        self.timer = StageTimer()
        self._status = OutputStatus(self.name, state="stopped" if enabled else "disabled", enabled=enabled)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._finished = threading.Event()  #: set once END_OF_STREAM has been delivered
        self._thread: threading.Thread | None = None

    # -- control (any thread) ---------------------------------------------------------------------
    @property
    def enabled(self) -> bool:
        return self._status.enabled

    def set_enabled(self, enabled: bool) -> None:
        with self._lock:
            self._status.enabled = enabled
        if not enabled:
            self.frames.clear()

    def start(self) -> None:
        self._stop.clear()
        self._finished.clear()
        self._thread = threading.Thread(target=self._run, name=f"lp-output-{self.name}", daemon=True)
        self._thread.start()

    def offer(self, frame: PublishedFrame | EndOfStream, timeout: float | None = None) -> bool:
        """Hand a frame to this output (False if disabled, or, lossless, if it did not take it in time)."""
        if not self.enabled and not isinstance(frame, EndOfStream):
            return False
        return self.frames.put(frame, timeout)

    def stop(self) -> None:
        self._stop.set()
        self.frames.close()

    def join(self, timeout: float) -> bool:
        t = self._thread
        if t is not None and t is not threading.current_thread():  # e.g. stop() from a frame callback
            t.join(timeout)
            return not t.is_alive()
        return True

    @property
    def thread(self) -> threading.Thread | None:
        """The output's thread (None before ``start``), so that its owner can wait for it after a stop."""
        return self._thread

    def wait_finished(self, timeout: float) -> bool:
        return self._finished.wait(timeout)

    def status(self) -> OutputStatus:
        with self._lock:
            st = OutputStatus(**vars(self._status))
        st.dropped = self.frames.dropped
        st.fps = self.timer.snapshot().fps
        st.target = str(getattr(self.output, "target", "") or "")
        return st

    # -- the output's thread ----------------------------------------------------------------------
    def _set(self, **kw: object) -> None:
        with self._lock:
            for k, v in kw.items():
                setattr(self._status, k, v)

    def _wait(self, seconds: float) -> None:
        """Back off, but wake at once on stop."""
        self._stop.wait(seconds)

    def _run(self) -> None:
        is_open = False
        delay = self.backoff_s[0]
        try:
            while not self._stop.is_set():
                if not self.enabled:
                    if is_open:
                        self._close()
                        is_open = False
                    self._set(state="disabled")
                    self._wait(_POLL_S)
                    continue
                if not is_open:
                    self._set(state="opening")
                    try:
                        self.output.open()
                    except OutputUnavailable as e:
                        _log.warning("output %s is unavailable: %s", self.name, e)
                        self._set(state="unavailable", message=str(e))
                        self._close()
                        self._drain_until_stop()
                        return
                    except Exception as e:  # noqa: BLE001 - any failure is reported and retried
                        self._failed("open", e, delay)
                        delay = min(delay * 2, self.backoff_s[1])
                        continue
                    is_open = True
                    self._set(state="running", message="")
                frame = self.frames.get(timeout=_POLL_S)
                if frame is None:
                    continue
                if isinstance(frame, EndOfStream):
                    self._finished.set()
                    continue
                t0 = time.perf_counter()
                try:
                    self.output.send(frame)
                except Exception as e:  # noqa: BLE001
                    self._close()
                    is_open = False
                    self._failed("send", e, delay)
                    delay = min(delay * 2, self.backoff_s[1])
                    continue
                self.timer.record(time.perf_counter() - t0)
                delay = self.backoff_s[0]
                with self._lock:
                    self._status.sent += 1
        finally:
            if is_open:
                self._close()
            self._finished.set()
            if self._status.state not in ("unavailable",):
                self._set(state="stopped" if self.enabled else "disabled")

    def _drain_until_stop(self) -> None:
        """An unavailable output keeps taking (and discarding) frames so that lossless producers never block."""
        while not self._stop.is_set():
            if isinstance(self.frames.get(timeout=_POLL_S), EndOfStream):
                self._finished.set()

    def _failed(self, what: str, e: Exception, delay: float) -> None:
        with self._lock:
            self._status.failures += 1
            n = self._status.failures
            self._status.state = "retrying"
            self._status.message = f"{what} failed: {e}; retrying in {delay:.1f}s"
        log = _log.warning if n <= 3 or n % 50 == 0 else _log.debug
        log("output %s: %s failed (%d so far): %s; retrying in %.1fs", self.name, what, n, e, delay)
        self.frames.clear()
        self._wait(delay)

    def _close(self) -> None:
        try:
            self.output.close()
        except Exception as e:  # noqa: BLE001 - closing must never take the runner down
            _log.warning("output %s: close failed: %s", self.name, e)
