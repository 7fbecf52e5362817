"""The deliveries' HTTP client: one asyncio event loop per worker process, on its own thread, with one aiohttp
session, sending every write a connector can express as one HTTP request (`HttpWriter`).

A delivery task (a Celery thread) hands its batch of requests to the loop and waits for the answers; the
loop has them all in flight at once. This replaces a thread per in-flight write on httpx (the issue's
measurements: per five posts at 128 in flight, httpx's AsyncClient 54 ms of CPU and 92 posts/s, aiohttp 1.5
ms and every post offered). Timeouts are the [delivery] timeout per request, as before; an answer that never
comes is reported, never raised, so a write's outcome is classified exactly as the synchronous path's.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from concurrent.futures import Future

import aiohttp

try:  # libuv's loop: the same aiohttp, a fifth less CPU per write (bench/pipeline.py's floors); not on Windows
    import uvloop
except ImportError:  # pragma: no cover (installed with tickethub where it exists)
    uvloop = None  # type: ignore[assignment]

from hub.core.ports import HttpAnswer, HttpWrite

# aiohttp's own defaults would add these, differently from httpx; the same for every receiver either way
_DEFAULT_HEADERS = {"user-agent": "tickethub", "accept": "*/*"}


class AsyncSender:
    """Thread-safe: `send` may be called from any thread; the requests run on this sender's loop."""

    def __init__(self, timeout_seconds: float, connections: int = 256):
        self.timeout = aiohttp.ClientTimeout(total=timeout_seconds)
        self.connections = connections
        self.loop = uvloop.new_event_loop() if uvloop is not None else asyncio.new_event_loop()
        self._session: aiohttp.ClientSession | None = None
        self._ready = threading.Event()
        self._failed: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="tickethub-sender", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._failed is not None:
            raise self._failed

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self._open())
        except BaseException as exc:  # noqa: BLE001 (handed to the constructor, which raises it)
            self._failed = exc
            self._ready.set()
            return
        self._ready.set()
        self.loop.run_forever()

    async def _open(self) -> None:
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=self.connections, limit_per_host=0),
            timeout=self.timeout, headers=_DEFAULT_HEADERS)

    def submit(self, writes: Sequence[HttpWrite]) -> Future[list[HttpAnswer]]:
        """Start sending `writes` (all at once); the future holds their answers, in order."""
        return asyncio.run_coroutine_threadsafe(self._all(list(writes)), self.loop)

    def send(self, writes: Sequence[HttpWrite]) -> list[HttpAnswer]:
        return self.submit(writes).result() if writes else []

    async def _all(self, writes: list[HttpWrite]) -> list[HttpAnswer]:
        return list(await asyncio.gather(*(self._one(w) for w in writes)))

    async def _one(self, write: HttpWrite) -> HttpAnswer:
        assert self._session is not None
        try:
            async with self._session.request(write.method, write.url, data=write.body,
                                             headers=dict(write.headers)) as response:
                body = await response.read()
                return HttpAnswer(response.status, {k.lower(): v for k, v in response.headers.items()}, body)
        except TimeoutError as exc:
            return HttpAnswer(None, {}, b"", f"timed out: {type(exc).__name__}")
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            return HttpAnswer(None, {}, b"", f"no answer: {type(exc).__name__}: {exc}"[:300])

    def close(self) -> None:
        async def _close() -> None:
            if self._session is not None:
                await self._session.close()

        if self.loop.is_running():
            asyncio.run_coroutine_threadsafe(_close(), self.loop).result(timeout=5)
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout=5)
