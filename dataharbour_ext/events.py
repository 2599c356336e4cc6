"""In-process publish/subscribe hub: services publish, the WebSocket handler subscribes."""

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

log = logging.getLogger(__name__)

Event = dict[str, Any]
Subscriber = Callable[[Event], None]


class EventHub:
    """Fan-out of events such as `{"type": "job_update", "data": {...}, "timestamp": ...}`.

    Subscribers are plain callables run synchronously on the event loop; a subscriber that
    needs to do slow work (a socket write) queues it itself. A failing subscriber is logged
    and never stops delivery to the others.
    """

    def __init__(self) -> None:
        self._subscribers: list[Subscriber] = []

    def subscribe(self, subscriber: Subscriber) -> Callable[[], None]:
        self._subscribers.append(subscriber)
        return lambda: self._subscribers.remove(subscriber) if subscriber in self._subscribers else None

    def subscribe_queue(self, maxsize: int = 1000) -> tuple[asyncio.Queue, Callable[[], None]]:
        """A queue fed with every event; when full, the oldest events are dropped."""
        queue: asyncio.Queue = asyncio.Queue(maxsize=maxsize)

        def put(event: Event) -> None:
            if queue.full():
                queue.get_nowait()
            queue.put_nowait(event)

        return queue, self.subscribe(put)

    def publish(self, event_type: str, data: Any) -> None:
        event = {"type": event_type, "data": data, "timestamp": datetime.now(timezone.utc).isoformat()}
        for subscriber in list(self._subscribers):
            try:
                subscriber(event)
            except Exception:
                log.exception("event subscriber failed for %s", event_type)
