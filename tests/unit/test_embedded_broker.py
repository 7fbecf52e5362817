"""The embedded broker under concurrent processes: every message is delivered once and whole."""

from __future__ import annotations

import multiprocessing
import os
import time
from pathlib import Path

from kombu import Connection

from hub import embedded_broker

MESSAGES = 1000


def _consume(folder: str, results: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    options = {"data_folder_in": folder, "data_folder_out": folder, "polling_interval": 0.01,
               "control_folder": os.path.join(folder, "control")}
    seen: list[int] = []
    with Connection(f"{embedded_broker.ALIAS}://", transport_options=options) as conn:
        queue = conn.SimpleQueue("events")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                message = queue.get(timeout=0.5)
            except queue.Empty:
                if os.path.exists(os.path.join(folder, "done")):
                    break
                continue
            seen.append(message.payload["n"])
            message.ack()
    results.put(seen)


def test_concurrent_consumers_get_every_message_exactly_once(tmp_path: Path) -> None:
    """Three worker processes reading while one publishes: all messages arrive, none twice, nobody crashes
    (kombu's own filesystem transport lets a reader see a half-written file and exit)."""
    folder = str(tmp_path)
    results: multiprocessing.Queue = multiprocessing.Queue()  # type: ignore[type-arg]
    consumers = [multiprocessing.Process(target=_consume, args=(folder, results)) for _ in range(3)]
    for process in consumers:
        process.start()
    options = {"data_folder_in": folder, "data_folder_out": folder, "control_folder": str(tmp_path / "control")}
    with Connection(f"{embedded_broker.ALIAS}://", transport_options=options) as conn:
        queue = conn.SimpleQueue("events")
        for n in range(MESSAGES):
            queue.put({"n": n})
    (tmp_path / "done").touch()
    received = [n for _ in consumers for n in results.get(timeout=90)]
    for process in consumers:
        process.join(30)
    assert [p.exitcode for p in consumers] == [0, 0, 0]
    assert sorted(received) == list(range(MESSAGES))
