"""What the real-peer harnesses (tests/peers/bottlecrm.py, tests/peers/tryton.py) share.

Finding a Python interpreter new enough, one builder at a time under a peer's folder, running a command
and failing with its output, a free loopback port, waiting for a started server to answer, stopping it,
the fields and `logs()` / `stop()` of a running peer (PeerServer), the `running_*` context managers, and
the end of each harness's `main()` (printing timings, serving until Ctrl-C).
Each harness subclasses PeerUnavailable and PeerFailed (so `except bottlecrm.PeerFailed` stays about
BottleCRM alone) and passes its own classes to the helpers here that raise.
"""

from __future__ import annotations

import fcntl
import os
import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Protocol, TypeVar

import httpx


class Stoppable(Protocol):
    def stop(self) -> None: ...


PeerT = TypeVar("PeerT", bound=Stoppable)


class PeerUnavailable(RuntimeError):
    """This machine cannot run the peer at all (no Python new enough): skip, or fail under CI."""


class PeerFailed(RuntimeError):
    """Installing, preparing or starting the peer went wrong; the message shows where."""


@dataclass(frozen=True)
class Interpreter:
    command: tuple[str, ...]
    env: dict[str, str]
    version: str


@dataclass
class PeerServer:
    """A peer's server process, started in `run_dir` from the virtual environment `venv`, listening on
    127.0.0.1:`port` and writing its output to `run_dir / LOG`. Subclasses add their own fields after these."""

    LOG: ClassVar[str]
    venv: Path
    run_dir: Path
    process: subprocess.Popen[bytes]
    port: int

    def logs(self, lines: int = 40) -> str:
        return tail_file(self.run_dir / self.LOG, lines)

    def stop(self) -> None:
        self._close_clients()
        terminate(self.process)

    def _close_clients(self) -> None:
        """Close the HTTP clients talking to the server (called by `stop` before the server is stopped)."""


def find_python(candidates: Sequence[tuple[Mapping[str, str], tuple[str, ...]]], minimum: tuple[int, int], *,
                needed_by: str, unavailable: type[PeerUnavailable] = PeerUnavailable) -> Interpreter:
    """The first of `candidates` ((extra environment, command) pairs) that runs and is Python >= `minimum`;
    none raises `unavailable` naming `needed_by` and what each candidate said."""
    tried = []
    for extra, command in candidates:
        env = {**os.environ, **extra}
        shown = " ".join([*(f"{k}={v}" for k, v in extra.items()), *command])
        try:
            probe = subprocess.run([*command, "-c", "import sys; print('%d.%d.%d' % sys.version_info[:3]); "
                                    f"sys.exit(sys.version_info < {tuple(minimum)!r})"],
                                   env=env, capture_output=True, text=True, timeout=30, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            tried.append(f"{shown}: {type(exc).__name__}")
            continue
        if probe.returncode == 0:
            return Interpreter(command, env, probe.stdout.strip())
        said = (probe.stdout.strip() or probe.stderr.strip() or f"exit {probe.returncode}").splitlines()[0]
        tried.append(f"{shown}: {said}")
    raise unavailable(f"{needed_by} needs Python >= {'.'.join(map(str, minimum))} and none was found; tried "
                      + "; ".join(tried))


@contextmanager
def locked(peer_dir: Path) -> Iterator[None]:
    """One builder at a time across processes (two pytest sessions must not install into one venv)."""
    peer_dir.mkdir(parents=True, exist_ok=True)
    with open(peer_dir / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def run(what: str, argv: Sequence[str], *, env: Mapping[str, str], cwd: Path | None = None, timeout: float,
        failed: type[PeerFailed] = PeerFailed) -> subprocess.CompletedProcess[str]:
    """Run `argv` to the end; a timeout or a non-zero exit raises `failed` with the command and its output."""
    try:
        done = subprocess.run(list(argv), env=dict(env), cwd=cwd, capture_output=True, text=True,
                              timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        raise failed(f"{what}: `{' '.join(argv)}` took longer than {timeout:.0f} s") from exc
    if done.returncode != 0:
        raise failed(f"{what}: `{' '.join(argv)}` exited {done.returncode}\n"
                     f"{tail(done.stdout)}\n{tail(done.stderr)}")
    return done


def wait_until_answering(process: subprocess.Popen[bytes], answers: Callable[[], bool], *, server: str,
                         probe: str, log: Path, timeout: float, failed: type[PeerFailed] = PeerFailed) -> None:
    """Poll `answers()` every 0.1 s until it is true (a TransportError counts as not yet); the server
    exiting first, or `timeout` seconds passing, raises `failed` with the end of its `log`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise failed(f"{server} exited {process.returncode} before answering:\n{tail_file(log)}")
        try:
            if answers():
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise failed(f"{server} did not answer {probe} within {timeout:.0f} s:\n{tail_file(log)}")


@contextmanager
def running(start: Callable[..., PeerT], run_dir: Path, **options: Any) -> Iterator[PeerT]:
    """`start(run_dir, **options)` on the way in, its `stop()` on the way out."""
    peer = start(run_dir, **options)
    try:
        yield peer
    finally:
        peer.stop()


def format_timings(timings: Mapping[str, float]) -> str:
    return ", ".join(f"{k} {v:.1f} s" for k, v in timings.items())


def serve_until_ctrl_c(peer: PeerServer) -> None:
    """For a harness run as a script: keep the peer up until its server exits or Ctrl-C."""
    print("Ctrl-C stops it.", flush=True)
    with suppress(KeyboardInterrupt):
        peer.process.wait()


def terminate(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM, up to 10 s to exit, then SIGKILL."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def tail(text: str, lines: int = 40) -> str:
    return "\n".join(text.splitlines()[-lines:])


def tail_file(path: Path, lines: int = 40) -> str:
    return tail(path.read_text(errors="replace"), lines)
