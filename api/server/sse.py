"""Server-sent events on aiohttp-sse: the ``: keep-alive`` comment; streams end at shutdown."""

from __future__ import annotations

import asyncio
import weakref

from aiohttp import web
from aiohttp_sse import EventSourceResponse

from leasehold.api.server.metrics import SSE_CONNECTIONS

KEEP_ALIVE_SECS = 15.0
LIVE_STREAMS = web.AppKey("live_streams", weakref.WeakSet[asyncio.Task[object]])


class KeepAliveResponse(EventSourceResponse):
    """Sends ``: keep-alive`` comments every ``ping_interval`` seconds."""

    async def _ping(self) -> None:
        message = f": keep-alive{self._sep}{self._sep}".encode()
        while True:
            await asyncio.sleep(self._ping_interval)
            try:
                async with asyncio.timeout(self._send_timeout):
                    await self.write(message)
            except TimeoutError:
                self._abort_transport()
                break
            except (ConnectionResetError, RuntimeError):
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
