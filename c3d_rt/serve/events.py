"""Getting predictions out of the pipeline threads without ever blocking them.

* :class:`EventHub` fans every prediction out to the ``/api/events`` clients. Each
  client has a bounded queue on the event loop; a slow client loses its oldest
  events (and is told how many), the pipeline never waits.
* :class:`Webhook` POSTs label changes to a URL from a bounded queue, retrying
  with back-off; when the queue is full new events are dropped and counted.
"""

from __future__ import annotations

import asyncio
import json
from typing import Callable

CLIENT_QUEUE = 256  # events waiting for one SSE client, at most
WEBHOOK_QUEUE = 256
WEBHOOK_RETRY_S = (0.5, 1.0, 2.0)  # waits between attempts; len + 1 attempts in all
WEBHOOK_TIMEOUT_S = 5.0


class ClientQueue(asyncio.Queue):
    """One SSE client's events, and how many it lost for being slow since it was last told."""

    lost = 0


class EventHub:
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.clients: set[ClientQueue] = set()
        self.closed = False

    def publish_threadsafe(self, event: dict) -> None:
        """From any thread: hand ``event`` to every client (a no-op without clients)."""
        if self.clients and not self.closed:
            self.loop.call_soon_threadsafe(self._fan_out, event)

    def _fan_out(self, event: dict | None) -> None:
        for queue in list(self.clients):
            if queue.full():
                queue.get_nowait()
                queue.lost += 1
            queue.put_nowait(event)

    def subscribe(self) -> ClientQueue:
        queue = ClientQueue(CLIENT_QUEUE)
        self.clients.add(queue)
        return queue

    def unsubscribe(self, queue: ClientQueue) -> None:
        self.clients.discard(queue)

    def close(self) -> None:
        """On the loop: end every client's stream (a None event)."""
        self.closed = True
        for queue in list(self.clients):
            while queue.full():
                queue.get_nowait()
            queue.put_nowait(None)


class Webhook:
    """POSTs each event (JSON) to ``url``; ``count(outcome)`` is told 'sent', 'failed' or 'dropped'."""

    def __init__(self, url: str, loop: asyncio.AbstractEventLoop, count: Callable[[str], None],
                 log: Callable[[str], None] = print) -> None:
        self.url, self.loop, self.count, self.log = url, loop, count, log
        self.headers = {"Content-Type": "application/json"}
        self.queue: asyncio.Queue = asyncio.Queue(WEBHOOK_QUEUE)
        self.task: asyncio.Task | None = None
        self.failures_logged = 0

    def start(self) -> None:
        self.task = self.loop.create_task(self._worker())

    def post_threadsafe(self, event: dict) -> None:
        self.loop.call_soon_threadsafe(self._enqueue, event)

    def _enqueue(self, event: dict) -> None:
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:
            self.count("dropped")

    async def _worker(self) -> None:
        import aiohttp

        timeout = aiohttp.ClientTimeout(total=WEBHOOK_TIMEOUT_S)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            while True:
                event = await self.queue.get()
                self.count("sent" if await self._deliver(session, event) else "failed")

    async def _deliver(self, session, event: dict) -> bool:
        body = json.dumps(event)
        for attempt in range(len(WEBHOOK_RETRY_S) + 1):
            try:
                async with session.post(self.url, data=body, headers=self.headers) as response:
                    if response.status < 400:
                        return True
                    why = f"HTTP {response.status}"
                    if response.status < 500 and response.status != 429:
                        break  # the receiver refuses it: retrying would not help
            except (OSError, asyncio.TimeoutError) as exc:
                why = f"{type(exc).__name__}: {exc}"
            except Exception as exc:  # aiohttp.ClientError and kin
                why = f"{type(exc).__name__}: {exc}"
            if attempt < len(WEBHOOK_RETRY_S):
                await asyncio.sleep(WEBHOOK_RETRY_S[attempt])
        if self.failures_logged < 5:
            self.failures_logged += 1
            self.log(f"warning: webhook {self.url} failed ({why}) for a {event.get('stream')} label change")
        return False

    async def close(self) -> None:
        if self.task is not None:
            self.task.cancel()
            try:
                await self.task
            except asyncio.CancelledError:
                pass
