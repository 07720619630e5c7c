"""Server-sent events on aiohttp-sse: the ``: keep-alive`` comment; at shutdown every stream gets
``event: shutdown`` and ends (its client resumes with Last-Event-ID on another process); with
LEASEHOLD_MAX_HOLD_SECS a stream gets ``event: reconnect`` and ends when that time has passed."""

from __future__ import annotations

import asyncio
import contextlib
import weakref

from aiohttp import web
from aiohttp.abc import AbstractStreamWriter
from aiohttp_sse import EventSourceResponse

from leasehold.api.server.appkeys import SETTINGS
from leasehold.api.server.metrics import SSE_CONNECTIONS

KEEP_ALIVE_SECS = 15.0
SHUTDOWN_SEND_SECS = 0.5  # a viewer that cannot take the shutdown event in time just loses it
LIVE_STREAMS = web.AppKey("live_streams", weakref.WeakSet[asyncio.Task[object]])


class KeepAliveResponse(EventSourceResponse):
    """Sends ``: keep-alive`` comments every ``ping_interval`` seconds; a comment that cannot be
    written ends the stream's handler (the client is gone)."""

    _handler: asyncio.Task[object] | None = None
    _shut_down = False
    _hold: asyncio.TimerHandle | None = None
    _ending: asyncio.Task[None] | None = None

    async def prepare(self, request: web.BaseRequest) -> AbstractStreamWriter | None:
        self._handler = asyncio.current_task()
        writer = await super().prepare(request)
        if isinstance(request, web.Request):
            live: weakref.WeakSet[KeepAliveResponse] = request.app[LIVE_RESPONSES]
            live.add(self)
            hold = request.app[SETTINGS].max_hold_secs
            if hold is not None:
                self._hold = asyncio.get_running_loop().call_later(hold, self._end_held)
        return writer

    def _end_held(self) -> None:
        """LEASEHOLD_MAX_HOLD_SECS passed: ``event: reconnect``, then the stream ends."""
        if self._handler is not None and not self._handler.done():
            self._ending = asyncio.create_task(self.end_for_shutdown("reconnect"))

    async def end_for_shutdown(self, event_name: str = "shutdown") -> None:
        """Sends ``event: shutdown`` (or ``reconnect``; no id: the client's Last-Event-ID stays
        that of the last entry it got), then ends the handler, which returns its response
        normally."""
        event = f"event: {event_name}{self._sep}data: {{}}{self._sep}{self._sep}".encode()
        with contextlib.suppress(TimeoutError, ConnectionResetError, RuntimeError, OSError):
            async with asyncio.timeout(SHUTDOWN_SEND_SECS):
                await self.write(event)
        self._shut_down = True
        self._end_handler()

    async def wait(self) -> None:
        """The handler caught the cancel that ended it for shutdown: it returns its response
        normally (a complete chunked body, a 200 in the request log), not as a 499."""
        task = asyncio.current_task()
        if self._shut_down and task is not None and task is self._handler and task.cancelling():
            task.uncancel()
        try:
            await super().wait()
        finally:
            if self._hold is not None:
                self._hold.cancel()

    @property
    def handler(self) -> asyncio.Task[object] | None:
        return self._handler

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


LIVE_RESPONSES = web.AppKey("live_responses", weakref.WeakSet[KeepAliveResponse])


def track(request: web.Request) -> None:
    """Remembers the handler's task so shutdown can end the stream instead of waiting on it."""
    task = asyncio.current_task()
    if task is not None:
        request.app[LIVE_STREAMS].add(task)
        SSE_CONNECTIONS.inc()
        task.add_done_callback(lambda _done: SSE_CONNECTIONS.dec())


async def close_live_streams(app: web.Application) -> int:
    """Ends every open stream (``event: shutdown`` first); returns how many were open."""
    live: weakref.WeakSet[KeepAliveResponse] = app[LIVE_RESPONSES]
    responses = list(live)
    await asyncio.gather(*(resp.end_for_shutdown() for resp in responses))
    streams: weakref.WeakSet[asyncio.Task[object]] = app[LIVE_STREAMS]
    ended = {resp.handler for resp in responses}
    tasks = [task for task in streams if not task.done() and task not in ended]
    for task in tasks:  # streams that had not started their response yet
        task.cancel()
    return len(responses) + len(tasks)

