"""Server-sent events on aiohttp-sse: the ``: keep-alive`` comment; streams end at shutdown."""

from __future__ import annotations

import asyncio
import weakref

from aiohttp import web
from aiohttp.abc import AbstractStreamWriter
from aiohttp_sse import EventSourceResponse

from leasehold.api.server.metrics import SSE_CONNECTIONS

KEEP_ALIVE_SECS = 15.0
LIVE_STREAMS = web.AppKey("live_streams", weakref.WeakSet[asyncio.Task[object]])


class KeepAliveResponse(EventSourceResponse):
    """Sends ``: keep-alive`` comments every ``ping_interval`` seconds; a comment that cannot be
    written ends the stream's handler (the client is gone)."""

    _handler: asyncio.Task[object] | None = None

    async def prepare(self, request: web.BaseRequest) -> AbstractStreamWriter | None:
        self._handler = asyncio.current_task()
        return await super().prepare(request)

    def _end_handler(self) -> None:
        # aiohttp cancels the handler when the connection is lost, but redis-py (under
        # asyncio.wait_for on Python 3.11) can swallow a cancel that lands as a command's send
        # completes; the viewer would then wait for live entries that no one will read
        if self._handler is not None and not self._handler.done():
            self._handler.cancel()

    async def _ping(self) -> None:
        message = f": keep-alive{self._sep}{self._sep}".encode()
        while True:
            await asyncio.sleep(self._ping_interval)
            try:
                async with asyncio.timeout(self._send_timeout):
                    await self.write(message)
            except TimeoutError:
                self._abort_transport()
                self._end_handler()
                break
            except (ConnectionResetError, RuntimeError):
                self._end_handler()
                break


def track(request: web.Request) -> None:
    """Remembers the handler's task so shutdown can end the stream instead of waiting on it."""
    task = asyncio.current_task()
    if task is not None:
        request.app[LIVE_STREAMS].add(task)
        SSE_CONNECTIONS.inc()
        task.add_done_callback(lambda _done: SSE_CONNECTIONS.dec())


async def close_live_streams(app: web.Application) -> None:
    streams: weakref.WeakSet[asyncio.Task[object]] = app[LIVE_STREAMS]
    for task in list(streams):
        task.cancel()
