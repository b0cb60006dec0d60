"""LatestValue: the newest item wins, drops are counted, waiters wake on close; lossless mode keeps all."""
from __future__ import annotations

import threading

from liveportrait_core.engine.handoff import END_OF_STREAM, EndOfStream, LatestValue


def test_put_replaces_and_counts_dropped():
    box: LatestValue[int] = LatestValue("t")
    for i in range(5):
        assert box.put(i)
    assert box.get(timeout=0) == 4
    assert box.dropped == 4 and box.puts == 5
    assert box.get(timeout=0) is None  # taken items are not returned twice


def test_get_waits_for_a_producer_thread():
    box: LatestValue[str] = LatestValue()
    started = threading.Event()

    def produce() -> None:
        started.wait()
        box.put("hello")

    t = threading.Thread(target=produce)
    t.start()
    started.set()
    assert box.get(timeout=5) == "hello"
    t.join()


def test_close_wakes_a_waiting_get():
    box: LatestValue[int] = LatestValue()
    result: list[object] = []
    t = threading.Thread(target=lambda: result.append(box.get(timeout=30)))
    t.start()
    box.close()
    t.join(timeout=5)
    assert not t.is_alive() and result == [None]
    assert box.put(1) is False and box.closed


def test_lossless_put_waits_for_the_consumer_and_keeps_every_item():
    box: LatestValue[int] = LatestValue(lossless=True)
    assert box.put(1)
    assert box.put(2, timeout=0.01) is False  # slot still full: not stored, not dropped
    got: list[int] = []

    def consume() -> None:
        while len(got) < 50:
            item = box.get(timeout=5)
            if item is None:
                return
            got.append(item)

    t = threading.Thread(target=consume)
    t.start()
    for i in range(2, 51):
        assert box.put(i, timeout=5)
    t.join(timeout=10)
    assert got == list(range(1, 51)) and box.dropped == 0


def test_clear_forgets_without_counting_a_drop():
    box: LatestValue[int] = LatestValue()
    box.put(1)
    box.clear()
    assert box.get(timeout=0) is None and box.dropped == 0


def test_end_of_stream_is_a_single_marker():
    assert isinstance(END_OF_STREAM, EndOfStream) and repr(END_OF_STREAM) == "END_OF_STREAM"


def test_counts_decides_which_replaced_items_are_drops():
    box: LatestValue[int] = LatestValue(counts=lambda item: item >= 0)  # e.g. idle frames (-1) are not input lost
    for item in (-1, -1, 5, 6):
        box.put(item)
    assert box.dropped == 1 and box.get(timeout=0) == 6  # -1 and -1 replaced: not counted; 5 replaced: counted


def test_wait_empty_lets_a_lossy_producer_hand_on_its_last_item():
    box: LatestValue[int] = LatestValue()
    box.put(1)
    assert box.wait_empty(0.01) is False
    threading.Timer(0.05, lambda: box.get(timeout=1)).start()
    assert box.wait_empty(5) is True
    box.close()
    assert box.wait_empty(0) is False
