"""A preview window (OpenCV): the character over a checkerboard, an FPS overlay, and the tracker's
debug view (landmarks on the camera frame) toggled with the D key.

The window runs on its own clock: a UI thread redraws it and reads the keyboard about 60 times a
second whether or not frames arrive, so Q answers at once even when a frame takes seconds on a CPU,
and while the networks load it says what the engine is doing (``status``, a callable that returns
text). ``send`` only hands the newest frame over. One UI thread serves every window of the process
and lives as long as it: OpenCV's Qt windows (its Linux wheels) belong to the thread that first made
one. It is deliberately not named like the engine's threads (``lp-``): OBS's shutdown waits for those,
and this one idles on an event once its windows are closed. macOS allows windows on the main thread
only: there the caller's loop calls ``pump()`` instead (``threaded`` is False).
"""
from __future__ import annotations

import logging
import math
import os
import sys
import threading
import time
from typing import Any, Callable

import numpy as np

from liveportrait_core.outputs.base import OutputUnavailable, PublishedFrame

_log = logging.getLogger(__name__)

KEY_HELP = "D: tracker debug view   F: FPS overlay   Q/Esc: quit"
#: The share of the window's height the top band (FPS, latency, frame) takes at most, for one line.
TOP_BAND = 0.08
#: The window fits in this many pixels (keeping the output's aspect ratio): usable on any screen.
MAX_WINDOW = (960, 720)
#: A smaller output is shown larger, up to this many pixels on its longest side.
MIN_WINDOW = 480
TICK_S = 1 / 60  #: the UI thread's period: keys are read and the window redrawn this often
STATUS_EVERY_S = 0.25  #: how often ``status`` is asked (it may take the engine's lock)
STALE_S = 1.5  #: with no new frame for this long, the overlay also says what the engine is busy with
WAITING_BG = (48, 40, 36)  #: BGR of the screen shown before the first frame


def _checkerboard(h: int, w: int, cell: int = 16) -> np.ndarray:
    yy, xx = np.indices((h, w))
    board = np.where(((yy // cell) + (xx // cell)) % 2 == 0, 200, 150).astype(np.uint8)
    return np.repeat(board[:, :, None], 3, axis=2)


def _draw_tracking(image: np.ndarray, observation: object) -> np.ndarray:
    """The tracker's own debug drawing (landmarks, crop box, pose, ratios); the plain frame when the
    observation is not the tracker's (nothing to draw)."""
    from liveportrait_core.tracking.debug_draw import draw_observation
    from liveportrait_core.tracking.observation import FaceObservation

    if isinstance(observation, FaceObservation):
        # the text starts below the window's top band (FPS and latency), which would cover its first line
        return draw_observation(image, observation, every_nth_landmark=2, text_top=int(TOP_BAND * image.shape[0]))
    return image


def display_size(width: int, height: int, max_size: tuple[int, int] = MAX_WINDOW,
                 min_side: int = MIN_WINDOW) -> tuple[int, int]:
    """The window size for an image of ``width`` x ``height``: same aspect ratio, within ``max_size``,
    small images enlarged to ``min_side`` on their longest side."""
    width, height = max(1, width), max(1, height)
    scale = min(max_size[0] / width, max_size[1] / height, max(1.0, min_side / max(width, height)))
    return max(1, round(width * scale)), max(1, round(height * scale))


def size_hint(settings: Any) -> tuple[int, int] | None:
    """The output size expected before the first frame (to open the window at its aspect ratio): the
    configured ``outputs.width/height``, else the active character image's size (with no choice, the folder's
    first image, which the engine takes when it is usable); None when unknown."""
    o = settings.outputs
    if o.width and o.height:
        return o.width, o.height
    if not o.paste_back:
        return 512, 512
    from liveportrait_core import paths  # noqa: PLC0415
    from liveportrait_core.characters.library import list_character_files  # noqa: PLC0415
    from liveportrait_core.images import CHARACTER_MAX_DIM

    active = settings.characters.active
    try:
        if active:
            path = paths.resolve(settings.characters.folder) / active
        else:
            path = list_character_files(settings.characters)[0]
        from PIL import Image  # noqa: PLC0415

        with Image.open(path) as im:  # reads the header only
            w, h = im.size
    except Exception:  # noqa: BLE001 - only a hint: the first frame sets the real size
        return None
    scale = min(1.0, CHARACTER_MAX_DIM / max(w, h, 1))
    return max(1, int(w * scale)), max(1, int(h * scale))


def engine_status_text(status: Any) -> str:
    """What the engine is doing, in words, from an ``EngineStatus`` (public fields only)."""
    state = getattr(status, "state", "") or ""
    message = getattr(status, "message", "") or ""
    if state == "error":
        return f"error: {message}" if message else "error"
    text = getattr(status, "activity", "") or message
    if not text and state == "running":
        errors = getattr(status, "errors", None) or []
        text = errors[-1] if errors else ("waiting for the next frame" if getattr(status, "frames", 0)
                                          else "waiting for the first frame")
    text = text or state
    character = getattr(status, "character", "") or ""
    if character and character not in text:
        text += f"\ncharacter: {character}"
    return text


def _wrap(text: str, width_px: int, scale: float, thickness: int) -> list[str]:
    """``text`` broken at spaces (and at its own newlines) into lines no wider than ``width_px``."""
    import cv2

    out: list[str] = []
    for para in text.splitlines() or [""]:
        line = ""
        for word in para.split(" "):
            trial = f"{line} {word}" if line else word
            if line and cv2.getTextSize(trial, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)[0][0] > width_px:
                out.append(line)
                line = word
            else:
                line = trial
        out.append(line)
    return out


def draw_text_band(image: np.ndarray, text: str, *, bottom: bool = False, scale: float | None = None) -> None:
    """Readable text on any picture: white with a dark outline, over a darkened band across the image;
    the font follows the image size and long lines wrap."""
    import cv2

    h, w = image.shape[:2]
    scale = scale or float(np.clip(h / 900, 0.45, 1.0))
    thick = max(1, round(scale * 2))
    pad = max(4, round(10 * scale))
    lines = _wrap(text, w - 2 * pad, scale, thick)
    (_, th), base = cv2.getTextSize("Ag", cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
    step = th + base + pad // 2
    band = len(lines) * step + pad
    y0 = h - band if bottom else 0
    y0, y1 = max(0, y0), min(h, y0 + band)
    image[y0:y1] = (image[y0:y1].astype(np.uint16) * 2 // 5).astype(np.uint8)  # darken, keep the picture
    y = y0 + pad // 2 + th
    for line in lines:
        cv2.putText(image, line, (pad, y), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), thick + 3, cv2.LINE_AA)
        cv2.putText(image, line, (pad, y), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), thick, cv2.LINE_AA)
        y += step


class _UiThread:
    """The process's one thread for OpenCV windows: runs tasks (open, close) and ticks open windows."""

    _instance: "_UiThread | None" = None
    _instance_lock = threading.Lock()

    @classmethod
    def get(cls) -> "_UiThread":
        with cls._instance_lock:
            if cls._instance is None:
                cls._instance = cls()
            return cls._instance

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._tasks: list[tuple[Callable[[], Any], threading.Event, list[Any]]] = []
        self._windows: list[PreviewWindow] = []
        self.thread = threading.Thread(target=self._run, name="preview-window-ui", daemon=True)
        self.thread.start()

    def call(self, fn: Callable[[], Any], timeout: float = 10.0) -> Any:
        """Run ``fn`` on the UI thread and return its result (its exception is raised here)."""
        if threading.current_thread() is self.thread:
            return fn()
        done, box = threading.Event(), []
        with self._lock:
            self._tasks.append((fn, done, box))
        self._wake.set()
        if not done.wait(timeout):
            raise OutputUnavailable(f"the window thread did not answer within {timeout:.0f} s")
        if isinstance(box[0], BaseException):
            raise box[0]
        return box[0]

    def add(self, window: "PreviewWindow") -> None:
        with self._lock:
            if window not in self._windows:
                self._windows.append(window)
        self._wake.set()

    def remove(self, window: "PreviewWindow") -> None:
        with self._lock:
            if window in self._windows:
                self._windows.remove(window)

    def _run(self) -> None:
        while True:
            t0 = time.monotonic()
            with self._lock:
                tasks, self._tasks = self._tasks, []
                windows = list(self._windows)
            for fn, done, box in tasks:
                try:
                    box.append(fn())
                except BaseException as e:  # noqa: BLE001 - handed to the caller
                    box.append(e)
                done.set()
            for w in windows:
                try:
                    w._tick(t0)
                except Exception as e:  # noqa: BLE001 - a broken window must not take the run down
                    _log.error("preview window: %s", e)
                    w._error = e
                    self.remove(w)
            if windows:
                self._wake.wait(max(0.0, TICK_S - (time.monotonic() - t0)))
            else:
                self._wake.wait()  # idle until a window or a task comes
            self._wake.clear()


class PreviewWindow:
    """Shows frames in a window. ``on_key(key)`` gets every other key press (e.g. the CLI maps C to
    calibrate and 1-9 to characters); ``on_quit()`` is called on Q, Esc or when the window is closed.
    ``status()`` returns what the engine is busy with (shown until the first frame, and over a frame
    that is not followed by another for a while); ``size`` is the output size expected, if known."""

    def __init__(self, title: str = "LivePortrait preview", name: str = "preview",
                 on_key: Callable[[str], None] | None = None, on_quit: Callable[[], None] | None = None,
                 status: Callable[[], str] | None = None, size: tuple[int, int] | None = None,
                 threaded: bool | None = None) -> None:
        self.name = name
        self.title = title
        self.on_key = on_key
        self.on_quit = on_quit
        self.status = status
        self.size = size
        self.threaded = (sys.platform != "darwin") if threaded is None else threaded
        self.show_fps = True
        self.show_debug = False
        self._bg: np.ndarray | None = None
        self._last_ts = 0.0
        self._fps = 0.0
        self._rendered = 0  #: frames this window has shown (the number the engine's status counts too)
        self._lock = threading.Lock()
        self._pending: PublishedFrame | None = None  #: the newest frame, not drawn yet
        self._frame: PublishedFrame | None = None  #: the frame on screen
        self._frame_t = 0.0  #: monotonic time it arrived
        self._base: np.ndarray | None = None  #: the frame on screen at window size, without overlay
        self._window_size: tuple[int, int] | None = None  #: the size the window was last given
        self._opened_t = 0.0
        self._status_text = ""
        self._status_t = -math.inf
        self._drawn_t = -math.inf
        self._shown = False
        self._quit_sent = False
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._ui: _UiThread | None = None
        self._error: BaseException | None = None

    # ---------------------------------------------------------------------------- lifecycle
    def open(self) -> None:
        if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
            raise OutputUnavailable("no display (DISPLAY is not set); the preview window needs a desktop session")
        if sys.platform == "darwin" and threading.current_thread() is not threading.main_thread():
            raise OutputUnavailable("on macOS a window can only be opened from the main thread; "
                                    "use the OBS source or NDI to watch the output")
        if "obspython" in sys.modules and not sys.platform.startswith("win"):
            # OpenCV's wheels bring their own Qt on Linux/macOS, which clashes with OBS's Qt in one process.
            raise OutputUnavailable("the preview window is not available inside OBS on this OS; "
                                    "the OBS source already shows the output")
        self._stop.clear()
        self._ready.clear()
        self._error = None
        self._quit_sent = False
        self._opened_t = time.monotonic()
        if not self.threaded:
            self._create_window()
        else:
            self._ui = _UiThread.get()
            self._ui.call(self._create_window)
            self._ui.add(self)
        self._ready.set()

    def send(self, frame: PublishedFrame) -> None:
        """Hand the newest frame to the window (drawn on the window's own clock)."""
        if self._error is not None:
            raise RuntimeError(f"the preview window stopped: {self._error}")
        with self._lock:
            self._pending = frame
        if not self.threaded:
            self.pump()

    def pump(self) -> None:
        """One turn of the window's event loop, for a window without its own thread (macOS); a no-op
        otherwise. Call it often (every 10-30 ms) from the thread that opened the window."""
        if not self.threaded and self._ready.is_set() and not self._stop.is_set():
            self._tick(time.monotonic())

    def close(self) -> None:
        self._stop.set()
        ui, self._ui = self._ui, None
        if ui is None:
            self._destroy_window()
            return
        ui.remove(self)
        try:
            ui.call(self._destroy_window, timeout=2.0)
        except OutputUnavailable as e:
            _log.warning("preview window: %s", e)

    # ---------------------------------------------------------------------------- drawing
    def compose(self, frame: PublishedFrame) -> np.ndarray:
        """The frame's BGR image over a checkerboard, at the frame's size (with the tracker's view beside
        it when D is on); no overlay."""
        import cv2

        bgra = frame.bgra
        h, w = bgra.shape[:2]
        if self._bg is None or self._bg.shape[:2] != (h, w):
            self._bg = _checkerboard(h, w)
        weight = bgra[:, :, 3].astype(np.float32) * (1.0 / 255.0)
        image = cv2.blendLinear(bgra[:, :, :3], self._bg, weight, 1.0 - weight)
        if self.show_debug and frame.source_bgr is not None:
            dbg = _draw_tracking(frame.source_bgr, frame.observation)
            scale = h / dbg.shape[0]
            dbg = cv2.resize(dbg, (max(1, int(dbg.shape[1] * scale)), h))
            image = np.hstack([dbg, image])
        return image

    def render(self, frame: PublishedFrame) -> np.ndarray:
        """What the window shows for a new ``frame``: composed, scaled to the window, FPS overlay."""
        import cv2

        image = self.compose(frame)
        dw, dh = display_size(image.shape[1], image.shape[0])
        if (dw, dh) != image.shape[1::-1]:
            image = cv2.resize(image, (dw, dh), interpolation=cv2.INTER_AREA if dw < image.shape[1]
                               else cv2.INTER_LINEAR)
        dt = frame.publish_ts - self._last_ts if self._last_ts else 0.0
        if dt > 0:
            self._fps = 0.9 * self._fps + 0.1 * (1.0 / dt) if self._fps else 1.0 / dt
        self._last_ts = frame.publish_ts
        self._rendered += 1
        return image

    def overlay(self, base: np.ndarray, frame: PublishedFrame, busy: str = "") -> np.ndarray:
        """``base`` with the FPS line on top and, when given, what the engine is busy with at the bottom."""
        image = base.copy()
        if self.show_fps:
            # a slow pipeline's time per frame is the busy line's (the engine's measurement): one figure on screen
            fps = 0.0 if busy else self._fps
            rate = "" if not fps else f"{fps:.1f} fps   " if fps >= 1 else f"{1 / fps:.1f} s per frame   "
            lat = frame.latency_s
            # "frame N" counts frames produced, like the status ("computing frame N+1"), not camera frames
            draw_text_band(image, f"{rate}latency {lat * 1e3:.0f} ms   frame {self._rendered}" if lat < 10
                           else f"{rate}latency {lat:.1f} s   frame {self._rendered}")
        if busy:
            draw_text_band(image, busy, bottom=True)
        return image

    def waiting_screen(self, text: str, elapsed_s: float) -> np.ndarray:
        """The picture before the first frame: what the engine is doing, a spinner, and the keys."""
        import cv2

        hint = self.size or (720, 540)
        w, h = display_size(*hint)
        image = np.empty((h, w, 3), np.uint8)
        image[:] = WAITING_BG
        scale = float(np.clip(min(w, h) / 600, 0.5, 1.0))
        cx, cy, r = w // 2, h // 2, max(12, min(w, h) // 14)
        start = (elapsed_s * 360) % 360
        cv2.ellipse(image, (cx, cy), (r, r), 0, 0, 360, (90, 80, 72), max(2, r // 5), cv2.LINE_AA)
        cv2.ellipse(image, (cx, cy), (r, r), 0, start, start + 90, (255, 200, 120), max(2, r // 5), cv2.LINE_AA)
        draw_text_band(image, text or f"starting ({elapsed_s:.0f} s)", scale=scale * 0.75)
        draw_text_band(image, "Q/Esc: quit", bottom=True, scale=scale * 0.7)
        return image

    # ---------------------------------------------------------------------------- keys
    def handle_key(self, key: int) -> None:
        if key < 0:
            return
        ch = chr(key & 0xFF).lower()
        if ch == "d":
            self.show_debug = not self.show_debug
            self._redraw_frame()
        elif ch == "f":
            self.show_fps = not self.show_fps
            self._drawn_t = -math.inf
        elif ch == "q" or key & 0xFF == 27:
            self._quit()
        elif self.on_key:
            self.on_key(ch)

    def _quit(self) -> None:
        if self.on_quit and not self._quit_sent:
            self._quit_sent = True
            _log.info("preview window: quit requested")
            self.on_quit()

    # ---------------------------------------------------------------------------- the event loop
    def _create_window(self) -> None:
        import cv2

        flags = cv2.WINDOW_NORMAL | getattr(cv2, "WINDOW_KEEPRATIO", 0) | getattr(cv2, "WINDOW_GUI_NORMAL", 0)
        try:
            cv2.namedWindow(self.title, flags)
        except cv2.error as e:
            raise OutputUnavailable(f"OpenCV cannot open a window here ({e}); install opencv-python, "
                                    "not the headless build") from None
        self._shown = False
        self._frame = self._base = None
        self._window_size = None
        self._status_t = self._drawn_t = -math.inf

    def _destroy_window(self) -> None:
        try:
            import cv2

            cv2.destroyWindow(self.title)
            cv2.waitKey(1)
        except Exception:  # noqa: BLE001 - the window may never have opened
            pass

    def _poll_status(self, now: float) -> bool:
        """Ask ``status`` now and then; True when its text changed."""
        if self.status is None or now - self._status_t < STATUS_EVERY_S:
            return False
        self._status_t = now
        try:
            text = str(self.status() or "")
        except Exception as e:  # noqa: BLE001 - the window keeps running without it
            text = f"(status unavailable: {e})"
        changed, self._status_text = text != self._status_text, text
        return changed

    def _redraw_frame(self) -> None:
        if self._frame is not None:
            self._base = self.render(self._frame)
            self._drawn_t = -math.inf

    def _tick(self, now: float) -> None:
        """Draw what changed, read one key, notice a closed window."""
        import cv2

        with self._lock:
            frame, self._pending = self._pending, None
        status_changed = self._poll_status(now)
        image = None
        if frame is not None:
            self._frame, self._frame_t = frame, now
            self._base = self.render(frame)
            image = self.overlay(self._base, frame)
            self._drawn_t = now
        elif self._frame is None:
            if status_changed or now - self._drawn_t >= 0.1:  # the spinner and the seconds move
                image = self.waiting_screen(self._status_text, now - self._opened_t)
                self._drawn_t = now
        elif self._base is not None:
            stale = now - self._frame_t >= STALE_S and self._status_text
            if status_changed or now - self._drawn_t >= 0.5 or self._drawn_t == -math.inf:
                image = self.overlay(self._base, self._frame, self._status_text if stale else "")
                self._drawn_t = now
        if image is not None:
            size = image.shape[1::-1]
            if size != self._window_size:  # open at, and follow, the output's aspect ratio
                cv2.resizeWindow(self.title, *size)
                self._window_size = size
            cv2.imshow(self.title, image)
        self.handle_key(cv2.waitKey(1))
        if self._shown:
            try:
                closed = cv2.getWindowProperty(self.title, cv2.WND_PROP_VISIBLE) < 1
            except cv2.error:
                closed = True
            if closed:  # the user closed the window: do not draw a new one
                self._stop.set()
                if self._ui is not None:
                    self._ui.remove(self)
                self._quit()
        elif image is not None:
            self._shown = True
