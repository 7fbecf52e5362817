"""The embedded database's write lock across processes: a writer in another process is waited for and
the waiter goes on the moment it is done, and a process killed while holding the lock wedges nobody."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

from sqlalchemy import text

from hub.store.engine import make_engine
from hub.store.migrate import upgrade
from hub.store.unit_of_work import Store

HOLDER = textwrap.dedent("""
    import sys, time
    from sqlalchemy import text
    from hub.store.engine import make_engine
    from hub.store.unit_of_work import Store
    store = Store(make_engine(sys.argv[1]))
    with store.unit_of_work() as uow:
        uow.conn.execute(text("INSERT INTO id_sequences (day, business_code, last_value) VALUES ('x', 'HOLD', 1)"))
        print("holding", flush=True)
        time.sleep(float(sys.argv[2]))
        uow.commit()
    print("released", flush=True)
""")


def _holder(url: str, seconds: float) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, url, str(seconds)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "holding"
    return proc


def _write_in_thread(store: Store, done: list[float]) -> threading.Thread:
    def write() -> None:
        with store.unit_of_work() as uow:
            uow.conn.execute(text("INSERT INTO id_sequences (day, business_code, last_value) VALUES ('x', 'MINE', 1)"))
            uow.commit()
        done.append(time.monotonic())

    thread = threading.Thread(target=write, daemon=True)
    thread.start()
    return thread


def _store(tmp_path: Path) -> tuple[str, Store]:
    url = f"sqlite:///{tmp_path / 'hub.db'}"
    upgrade(make_engine(url))
    return url, Store(make_engine(url))


def _codes(store: Store) -> set[str]:
    with store.engine.connect() as conn:
        return set(conn.execute(text("SELECT business_code FROM id_sequences")).scalars())


def test_a_writer_waits_for_another_process_and_goes_on_when_it_commits(tmp_path: Path) -> None:
    url, store = _store(tmp_path)
    holder = _holder(url, 1.0)
    done: list[float] = []
    started = time.monotonic()
    _write_in_thread(store, done).join(30)
    assert holder.wait(30) == 0
    assert done and done[0] - started >= 0.5  # it waited for the other process's transaction
    assert _codes(store) == {"HOLD", "MINE"}  # both committed, neither lost


def test_a_process_killed_while_writing_blocks_nobody(tmp_path: Path) -> None:
    url, store = _store(tmp_path)
    holder = _holder(url, 60)
    done: list[float] = []
    writer = _write_in_thread(store, done)
    time.sleep(0.3)
    assert not done  # still waiting for the holder
    holder.kill()
    holder.wait(10)
    writer.join(30)
    assert done, "the write never went through after the lock holder was killed"
    assert _codes(store) == {"MINE"}  # the killed transaction was rolled back

