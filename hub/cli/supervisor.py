"""`tickethub up`: the API, the workers and the scheduler as child processes of one command.

Children that die are restarted (with a pause that grows when they keep dying); Ctrl-C or SIGTERM
stops them all. Everything accepted is in the database, so a stop or a crash anywhere loses nothing.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field

import structlog

log = structlog.get_logger("tickethub.up")


@dataclass
class Child:
    name: str
    argv: list[str]
    process: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    started_at: float = 0.0
    next_start: float = 0.0

    def start(self, env: dict[str, str]) -> None:
        self.process = subprocess.Popen(self.argv, env=env)
        self.started_at = time.monotonic()
        log.info("started", child=self.name, pid=self.process.pid)


@dataclass
class Supervisor:
    children: list[Child]
    env: dict[str, str] = field(default_factory=lambda: dict(os.environ))
    stopping: bool = False

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)
        for child in self.children:
            child.start(self.env)
        while not self.stopping:
            time.sleep(0.2)
            now = time.monotonic()
            for child in self.children:
                code = child.process.poll() if child.process else 0
                if code is None or self.stopping:
                    continue
                if child.next_start == 0.0:
                    quick = now - child.started_at < 10
                    child.restarts = child.restarts + 1 if quick else 0
                    child.next_start = now + min(30.0, 0.5 * 2 ** child.restarts)
                    log.warning("child exited; restarting", child=child.name, code=code,
                                in_seconds=round(child.next_start - now, 1))
                elif now >= child.next_start:
                    child.next_start = 0.0
                    child.start(self.env)
        return self._shutdown()

    def _stop(self, _signum: int, _frame: object) -> None:
        self.stopping = True

    def _shutdown(self) -> int:
        for child in self.children:
            if child.process and child.process.poll() is None:
                child.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 15
        for child in self.children:
            if child.process is None:
                continue
            try:
                child.process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.process.kill()
                child.process.wait()
        log.info("stopped")
        return 0


def tickethub_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "hub", *args]
