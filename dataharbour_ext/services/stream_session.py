"""One client's live stream: its topics, its numbered messages and how far it has read.

Every message a client gets is numbered (`seq`, one more per message) and kept in a bounded
ring. The ring is also the client's queue: the connection's writer sends entries in order
and the session knows what was sent. So a client that reconnects with `since_seq` gets what
it missed from the ring, and a client that falls more than `max_backlog` messages behind is
skipped forward (a `lagged` message and a snapshot) instead of holding anything up.
"""

import asyncio
import json
import secrets
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timezone

DEFAULT_TOPICS = frozenset({"jobs", "metrics"})
LOG_MARKS = 10_000
SEND_BATCH = 64  # messages handed to the connection at once (one wake-up, not one each)


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat()


def message_text(seq: int, event_type: str, data_json: str, timestamp: str) -> str:
    # The event's data is serialized once per event, not once per client.
    return f'{{"type":{json.dumps(event_type)},"data":{data_json},"timestamp":"{timestamp}","seq":{seq}}}'


@dataclass
class Entry:
    seq: int
    type: str
    data_json: str
    timestamp: str
    text: str
    log_key: str | None = None  # the job_log subscription this chunk belongs to
    next_offset: int | None = None
    subject: str | None = None  # the job a whole-state message is about
    resendable: bool = True  # whole-state messages may be sent again after a lag; log chunks not


class ClientSession:
    def __init__(self, user: str, client_id: str, *, ring_size: int, ring_bytes: int, max_backlog: int):
        self.user = user
        self.client_id = client_id
        self.id = secrets.token_hex(8)  # a resume must name it: a re-created session numbers anew
        self.topics: set[str] = set(DEFAULT_TOPICS)
        self.can_read_jobs = True  # the authorizer's answer for `read` on dataharbour:jobs
        self.can_read_monitoring = True  # and for `read` on dataharbour:monitoring
        self.can_read_clusters = True  # and for `read` on dataharbour:clusters
        self.seq = 0
        self.sent_seq = 0
        self.ring: deque[Entry] = deque()
        self.ring_size = ring_size
        self.ring_bytes = ring_bytes
        self._bytes = 0
        self.max_backlog = max_backlog
        self.connection = 0  # bumped by every attach: an older writer stops
        self.attached = False
        self.detached_at: float | None = None
        # (seq, job_log key, next_offset) of log chunks, kept longer than the ring: where to
        # resume a log for a client that last saw `seq`.
        self.log_marks: deque[tuple[int, str, int]] = deque(maxlen=LOG_MARKS)
        self.lagging = False
        self.receiving = asyncio.Lock()  # a client's messages are handled one after another
        self._wake = asyncio.Event()  # for the writer: something to send
        self._sent = asyncio.Event()  # for log followers: the writer got further

    # ---- what the client receives --------------------------------------------------

    def push(self, event_type: str, data_json: str, timestamp: str | None = None, *,
             log_key: str | None = None, next_offset: int | None = None, subject: str | None = None) -> Entry:
        self.seq += 1
        timestamp = timestamp or now_iso()
        entry = Entry(self.seq, event_type, data_json, timestamp,
                      message_text(self.seq, event_type, data_json, timestamp),
                      log_key=log_key, next_offset=next_offset, subject=subject, resendable=log_key is None)
        self.ring.append(entry)
        if log_key is not None and next_offset is not None:
            self.log_marks.append((entry.seq, log_key, next_offset))
        self._bytes += len(entry.text)
        while len(self.ring) > self.ring_size or (self._bytes > self.ring_bytes and len(self.ring) > 1):
            self._bytes -= len(self.ring.popleft().text)
        self._wake.set()
        return entry

    def push_data(self, event_type: str, data) -> Entry:
        return self.push(event_type, json.dumps(data, ensure_ascii=False))

    def backlog(self) -> int:
        return self.seq - self.sent_seq

    def has_since(self, since_seq: int) -> bool:
        """Can the client resume right after `since_seq` from the ring alone?"""
        if since_seq > self.seq or since_seq < 0:
            return False
        if since_seq == self.seq:
            return True
        return bool(self.ring) and self.ring[0].seq <= since_seq + 1

    def mark_log_offset(self, log_key: str, offset: int) -> None:
        """From the latest message on, a client's position in that log is `offset` (after a
        rewind: what it had been sent, not the chunks skipped since)."""
        self.log_marks.append((self.seq, log_key, offset))

    def log_offset_seen(self, log_key: str, seq: int) -> int | None:
        """The offset a client that has seen messages up to `seq` continues a log from."""
        for mark_seq, key, next_offset in reversed(self.log_marks):
            if mark_seq <= seq and key == log_key:
                return next_offset
        return None

    def entries_after(self, seq: int) -> list[Entry]:
        if not self.ring or seq >= self.seq:
            return []
        start = max(0, seq + 1 - self.ring[0].seq)
        return list(self.ring)[start:]

    # ---- the connection ------------------------------------------------------------

    def attach(self, loop_time: float) -> int:
        self.connection += 1
        self.attached = True
        self.detached_at = None
        self._wake.set()
        self._sent.set()
        return self.connection

    def detach(self, connection: int, loop_time: float) -> None:
        if connection == self.connection:
            self.attached = False
            self.detached_at = loop_time
            self._wake.set()

    def is_current(self, connection: int) -> bool:
        return self.connection == connection and self.attached

    async def outgoing(self, connection: int, on_lag) -> AsyncIterator[list[str]]:
        """Texts to send, in order and in batches of what is waiting, for as long as
        `connection` is the session's. `on_lag` is awaited when the client has fallen too
        far behind (it pushes what replaces the skipped messages)."""
        while self.is_current(connection):
            if self.backlog() > self.max_backlog or (self.ring and self.ring[0].seq > self.sent_seq + 1):
                await on_lag(self, connection)
                continue
            if self.sent_seq >= self.seq:
                self._wake.clear()
                await self._wake.wait()
                continue
            first = self.sent_seq + 1 - self.ring[0].seq
            batch = [self.ring[i].text for i in range(first, min(len(self.ring), first + SEND_BATCH))]
            self.sent_seq += len(batch)
            yield batch  # returns once the connection has written them
            self._sent.set()

    async def caught_up(self) -> None:
        """Wait until the client is attached and has been sent everything (flow control for
        log chunks: a slow reader gets the log as fast as it reads it, not faster)."""
        while not (self.attached and self.backlog() == 0 and not self.lagging):
            self._sent.clear()
            await self._sent.wait()
