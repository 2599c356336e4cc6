"""In-process publish/subscribe hub: services publish, the live stream and Jupyter's event
bus subscribe."""

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Event:
    """One thing that happened. `topics` say who is interested: `jobs` and `job:<id>` for a
    job's changes, `metrics`, `clusters`... `seq` numbers the hub's events in order."""

    seq: int
    type: str
    data: Any
    topics: tuple[str, ...]
    timestamp: str


Subscriber = Callable[[Event], None]


def job_topics(job_id: str) -> tuple[str, ...]:
    return ("jobs", f"job:{job_id}")


class EventHub:
    """Fan-out of events to subscribers.

    Subscribers are plain callables run synchronously on the event loop, in publish order; a
    subscriber that needs to do slow work (a socket write) queues it itself. A failing
    subscriber is logged and never stops delivery to the others.
    """

    def __init__(self) -> None:
        self._subscribers: list[Subscriber] = []
        self.seq = 0

    def subscribe(self, subscriber: Subscriber) -> Callable[[], None]:
        self._subscribers.append(subscriber)
        return lambda: self._subscribers.remove(subscriber) if subscriber in self._subscribers else None

    def publish(self, event_type: str, data: Any, topics: tuple[str, ...]) -> Event:
        self.seq += 1
        event = Event(self.seq, event_type, data, topics, datetime.now(timezone.utc).isoformat())
        for subscriber in list(self._subscribers):
            try:
                subscriber(event)
            except Exception:
                log.exception("event subscriber failed for %s", event_type)
        return event
