"""The embedded broker under concurrent processes: every message is delivered once and whole."""

from __future__ import annotations

import multiprocessing
import os
import time
from pathlib import Path

import pytest
from kombu import Connection

from hub.messaging import embedded_broker

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


def test_messages_left_in_the_shared_folder_by_an_earlier_version_are_still_delivered(tmp_path: Path) -> None:
    """Before queues had folders of their own, messages were `<time>_<uuid>.<queue>.msg` in the shared
    folder; a channel opening there moves them into their queue's folder, so none is lost."""
    # a queue name no other test declares: kombu remembers declared entities for the whole process
    options = {"data_folder_in": str(tmp_path), "data_folder_out": str(tmp_path),
               "control_folder": str(tmp_path / "control")}
    with Connection(f"{embedded_broker.ALIAS}://", transport_options=options) as conn:
        queue = conn.SimpleQueue("legacy")
        queue.put({"n": 1})
        [folder] = [p for p in tmp_path.iterdir() if p.name.startswith("legacy")]
        [message] = [p for p in folder.iterdir() if p.suffix == ".msg"]
        message.rename(tmp_path / f"{message.stem}.legacy.msg")  # as kombu's layout had it
    with Connection(f"{embedded_broker.ALIAS}://", transport_options=options) as conn:
        queue = conn.SimpleQueue("legacy")
        received = queue.get(timeout=5)
        received.ack()
        assert received.payload == {"n": 1}
        assert not list(tmp_path.glob("*.msg"))


def test_consumed_message_files_are_written_over_by_later_publishes_and_read_back_whole(tmp_path: Path) -> None:
    """A consumed message's file is kept as a spare and the next publish writes over it (creating a file
    cost more than the write on this machine's ext4): messages of every length, longer or shorter than the
    file they land in, read back exactly, and later messages live in the files of earlier ones."""
    options = {"data_folder_in": str(tmp_path), "data_folder_out": str(tmp_path),
               "control_folder": str(tmp_path / "control")}
    sizes = [5, 3000, 40, 0, 700, 12, 2500, 1]

    def inodes(folder: Path, suffix: str = "") -> set[int]:
        return {p.stat().st_ino for p in folder.iterdir() if p.is_file() and p.name.endswith(suffix)}

    with Connection(f"{embedded_broker.ALIAS}://", transport_options=options) as conn:
        queue = conn.SimpleQueue("reused")
        [folder] = [p for p in tmp_path.iterdir() if p.name.startswith("reused")]
        spares = set()
        for round_ in range(4):
            sent = [{"round": round_, "text": "x" * size} for size in sizes]
            for payload in (sent if round_ % 2 else reversed(sent)):  # spares meet longer and shorter messages
                queue.put(payload)
            if round_:
                assert inodes(folder, ".msg") <= spares
            received = []
            for _ in sent:
                message = queue.get(timeout=5)
                received.append(message.payload)
                message.ack()
            assert sorted(received, key=lambda p: len(p["text"])) == sorted(sent, key=lambda p: len(p["text"]))
            spares = inodes(tmp_path / ".spare")
            assert len(spares) == len(sizes)


def test_spare_message_files_are_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """After a backlog drains, consumers keep about SPARE_LIMIT files for later messages and delete the rest."""
    monkeypatch.setattr(embedded_broker, "SPARE_LIMIT", 3)
    monkeypatch.setattr(embedded_broker, "SPARE_RECOUNT", 1)
    options = {"data_folder_in": str(tmp_path), "data_folder_out": str(tmp_path),
               "control_folder": str(tmp_path / "control")}
    with Connection(f"{embedded_broker.ALIAS}://", transport_options=options) as conn:
        queue = conn.SimpleQueue("bounded")
        for n in range(20):
            queue.put({"n": n})
        got = []
        for _ in range(20):
            message = queue.get(timeout=5)
            got.append(message.payload["n"])
            message.ack()
    assert sorted(got) == list(range(20))
    assert len(list((tmp_path / ".spare").iterdir())) == 3
