"""An ASGI app (a sandbox twin) served by uvicorn on a loopback port, for what only real sockets show
(client timeouts, a write that lands after the client gave up)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn

from tests.e2e.harness import free_port, wait_until


@contextmanager
def served(app: Any) -> Iterator[str]:
    """Serve `app` until the block ends; its base URL."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_until(lambda: server.started, 10, 0.02, "uvicorn to start")
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
