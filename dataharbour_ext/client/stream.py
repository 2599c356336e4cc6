"""The live stream ({base_url}api/v1/ws/{client_id}) as an async iterator of messages that
survives disconnects: it reconnects under the same client id with `?since_seq=<last seq>`
(and the session it had), so the server resends what was missed; if the server lost the
session, the topics are subscribed again, logs from the offsets already received.

Tornado's websocket client (tornado ships with Jupyter Server): no extra dependency.
"""

import asyncio
import json
import secrets
import time
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel
from tornado.httpclient import HTTPClientError, HTTPRequest
from tornado.websocket import WebSocketClientConnection, WebSocketClosedError, websocket_connect

from ..models import ClusterInfo, JobProgress, JobSummary, LogPage, MetricsSample, ServiceStatus
from .discovery import ServerAddress
from .errors import ConnectionFailed, DataHarbourError, StreamClosed, api_error

# Replies to what the client sent: hidden unless asked for (`control=True`).
CONTROL_TYPES = frozenset({"welcome", "subscribed", "unsubscribed", "pong"})
MESSAGE_MODELS: dict[str, type[BaseModel]] = {
    "job_update": JobSummary,
    "job_progress": JobProgress,
    "job_log": LogPage,
    "metrics": MetricsSample,
    "cluster_update": ClusterInfo,
    "service_update": ServiceStatus,
}
REPLACED = 4000  # the server's close code: this client id connected again elsewhere
RECONNECT_DELAYS = (0.1, 0.25, 0.5, 1.0, 2.0)  # then every 2 s until reconnect_timeout
MAX_SILENT_CONNECTIONS = 10
CONNECT_TIMEOUT = 10.0
PING_INTERVAL = 20.0  # a silently dead connection is noticed within about twice this


@dataclass(frozen=True)
class StreamMessage:
    """One message of the stream: `{type, data, timestamp, seq}` as the server sent it (`seq`
    is None for messages a polling fallback made up)."""

    type: str
    data: Any
    timestamp: str | None = None
    seq: int | None = None

    def model(self):
        """`data` as the server's model for this type (JobSummary for job_update, LogPage for
        job_log, ...); the plain data for types without one."""
        model_class = MESSAGE_MODELS.get(self.type)
        return model_class.model_validate(self.data) if model_class else self.data


def topic_request(item: str | Mapping) -> tuple[str, dict]:
    """A topic as the caller wrote it: `"jobs"`, `"job:<id>"`, or a log's
    `{"topic": "job_log:<id>", "offset": 0, "stream": "all", "attempt": N}`."""
    if isinstance(item, str):
        return item, {}
    options = {key: value for key, value in item.items() if key != "topic" and value is not None}
    return item["topic"], options


class AsyncStream:
    """`async with client.stream(["jobs"]) as stream: async for message in stream: ...`

    `topics=None` keeps the server's defaults for a new connection (jobs, metrics); a list
    subscribes exactly those (the defaults not in it are unsubscribed). Messages already seen
    (`seq` not above the last one) are never yielded twice."""

    def __init__(self, address: ServerAddress, topics: Iterable[str | Mapping] | None = None, *,
                 client_id: str | None = None, control: bool = False, reconnect: bool = True,
                 reconnect_timeout: float = 60.0, verify: bool | str = True):
        self.address = address
        self.client_id = client_id or f"py-{secrets.token_hex(6)}"
        self.control = control
        self.reconnect = reconnect
        self.reconnect_timeout = reconnect_timeout
        self.verify = verify
        self.wanted: dict[str, dict] | None = None if topics is None else dict(map(topic_request, topics))
        self.topics: list[str] = []  # the topics the server last said this client has
        self.session_id: str | None = None
        self.last_seq = 0
        self.reconnects = 0
        self._ws: WebSocketClientConnection | None = None
        self._read: asyncio.Future | None = None
        self._pending: deque[StreamMessage] = deque()
        self._closed = False
        self._silent_connections = 0  # reconnections in a row that closed before any message
        self._opening: asyncio.Lock | None = None

    # ---- lifecycle -------------------------------------------------------------------

    async def open(self) -> "AsyncStream":
        """Connect and subscribe; returns once the server confirmed the topics."""
        if self._opening is None:
            self._opening = asyncio.Lock()
        async with self._opening:
            if self._ws is None and not self._closed:
                self._ws = await self._connect(since_seq=None)
                welcome = await self._next_message(accept_any=True)
                if welcome is None or welcome.type != "welcome":
                    raise StreamClosed(f"the live stream at {self.address.url} did not greet this client")
                if self.control:
                    self._pending.append(welcome)
                await self._align_topics(welcome.data.get("topics", []), wait=True)
        return self

    async def close(self) -> None:
        self._closed = True
        if self._ws is not None:
            self._ws.close()
            self._ws = None

    async def __aenter__(self) -> "AsyncStream":
        return await self.open()

    async def __aexit__(self, *exc) -> None:
        await self.close()

    def __aiter__(self):
        return self

    async def __anext__(self) -> StreamMessage:
        try:
            message = await self.receive()
        except StreamClosed:
            if self._closed:
                raise StopAsyncIteration from None
            raise
        return message

    # ---- messages --------------------------------------------------------------------

    async def receive(self, timeout: float | None = None) -> StreamMessage | None:
        """The next message, or None if none came within `timeout` seconds."""
        await self.open()
        if self._pending:
            return self._pending.popleft()
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            message = await self._next_message(timeout=remaining)
            if message is None:
                return None  # timed out
            if message.type == "welcome":  # after a reconnect: the session may have lost our topics
                await self._align_topics(message.data.get("topics", []), wait=False)
            if self.control or message.type not in CONTROL_TYPES:
                return message

    async def subscribe(self, topics: Iterable[str | Mapping]) -> None:
        """Add topics (their confirmation is a `subscribed` control message)."""
        await self.open()
        requested = dict(map(topic_request, topics))
        self.wanted = {**self._wanted_now(), **requested}
        await self._send({"type": "subscribe", "topics": [_topic_item(t, o) for t, o in requested.items()]})

    async def unsubscribe(self, topics: Iterable[str]) -> None:
        await self.open()
        names = [topic_request(t)[0] for t in topics]
        self.wanted = self._wanted_now()
        for name in names:
            self.wanted.pop(name, None)
        await self._send({"type": "unsubscribe", "topics": names})

    def _wanted_now(self) -> dict[str, dict]:
        # Kept the server's defaults so far: from now on they are what this client wants.
        return dict(self.wanted) if self.wanted is not None else {topic: {} for topic in self.topics}

    async def ping(self) -> None:
        await self._send({"type": "ping"})

    # ---- inside ----------------------------------------------------------------------

    async def _next_message(self, timeout: float | None = None, accept_any: bool = False) -> StreamMessage | None:
        """The next new message from the connection, reconnecting when it drops."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if self._closed:
                raise StreamClosed("the stream was closed")
            if self._read is None:
                self._read = asyncio.ensure_future(self._ws.read_message())
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            done, _ = await asyncio.wait({self._read}, timeout=remaining)
            if not done:
                return None  # the read stays pending for the next call: nothing is lost
            text, self._read = self._read.result(), None
            if text is None:
                await self._connection_lost()
                continue
            self._silent_connections = 0
            message = _parse(text)
            if message is not None and (accept_any or self._is_new(message)):
                self._note(message)
                return message

    def _is_new(self, message: StreamMessage) -> bool:
        if message.type == "welcome":
            return True  # a new session numbers from 1 again
        return message.seq is None or message.seq > self.last_seq

    def _note(self, message: StreamMessage) -> None:
        if message.seq is not None:
            self.last_seq = message.seq
        data = message.data if isinstance(message.data, dict) else {}
        if message.type in ("welcome", "subscribed", "unsubscribed"):
            self.topics = list(data.get("topics", self.topics))
        if message.type == "welcome":
            self.session_id = data.get("session", self.session_id)
        elif message.type == "job_log" and self.wanted is not None:
            # Where to go on if the server loses the session: right after what we have.
            topic = f"job_log:{data.get('job_id')}"
            if topic in self.wanted:
                self.wanted[topic] = {"offset": data.get("next_offset", 0), "stream": data.get("stream", "all"),
                                      "attempt": data.get("attempt")}

    async def _connection_lost(self) -> None:
        if self._closed or self._ws is None:
            raise StreamClosed("the stream was closed")
        code, reason = self._ws.close_code, self._ws.close_reason
        self._ws = None
        if code == REPLACED:
            raise StreamClosed(f"the live stream of {self.client_id!r} was taken over by another connection "
                               f"({reason})")
        if not self.reconnect:
            raise StreamClosed(f"the live stream closed ({code}: {reason})")
        if self._silent_connections:  # closed again before saying anything: don't hammer the server
            if self._silent_connections > MAX_SILENT_CONNECTIONS:
                raise StreamClosed(f"the server keeps closing the live stream ({code}: {reason})")
            await asyncio.sleep(RECONNECT_DELAYS[min(self._silent_connections, len(RECONNECT_DELAYS)) - 1])
        self._silent_connections += 1
        self._ws = await self._reconnect()

    async def _reconnect(self) -> WebSocketClientConnection:
        deadline = time.monotonic() + self.reconnect_timeout
        attempt = 0
        while True:
            try:
                connection = await self._connect(since_seq=self.last_seq)
                self.reconnects += 1
                return connection
            except ConnectionFailed as error:
                delay = RECONNECT_DELAYS[min(attempt, len(RECONNECT_DELAYS) - 1)]
                attempt += 1
                if time.monotonic() + delay > deadline:
                    raise StreamClosed(f"the live stream could not reconnect within {self.reconnect_timeout:g} s: "
                                       f"{error.message}") from error
                await asyncio.sleep(delay)

    async def _connect(self, since_seq: int | None) -> WebSocketClientConnection:
        query = {}
        if since_seq is not None:
            query["since_seq"] = str(since_seq)
            if self.session_id:
                query["session"] = self.session_id
        url = self.address.websocket_url(self.client_id, query)
        request = HTTPRequest(url, headers=self.address.headers(), validate_cert=bool(self.verify),
                              ca_certs=self.verify if isinstance(self.verify, str) else None,
                              connect_timeout=CONNECT_TIMEOUT, request_timeout=CONNECT_TIMEOUT)
        try:
            return await websocket_connect(request, ping_interval=PING_INTERVAL, ping_timeout=PING_INTERVAL)
        except HTTPClientError as error:
            if error.code == 599 or error.code >= 500:
                raise ConnectionFailed(f"the live stream at {self.address.url} could not be reached "
                                       f"({error})") from error
            raise _refused(error) from error
        except (OSError, asyncio.TimeoutError, WebSocketClosedError) as error:
            raise ConnectionFailed(f"the live stream at {self.address.url} could not be reached "
                                   f"({error or type(error).__name__})") from error

    async def _align_topics(self, current: list[str], *, wait: bool) -> None:
        """Make the session's topics the wanted ones; with `wait`, until the server confirmed."""
        if self.wanted is None:
            return
        extra = [topic for topic in current if topic not in self.wanted]
        missing = {topic: options for topic, options in self.wanted.items() if topic not in current}
        expected = []
        if extra:
            await self._send({"type": "unsubscribe", "topics": extra})
            expected.append("unsubscribed")
        if missing:
            await self._send({"type": "subscribe", "topics": [_topic_item(t, o) for t, o in missing.items()]})
            expected.append("subscribed")
        while wait and expected:
            message = await self._next_message()
            if message.type == "error":
                raise DataHarbourError(f"subscribing to {sorted(missing)} failed: {message.data.get('message')}")
            if message.type == expected[0]:
                expected.pop(0)
            if message.type in CONTROL_TYPES:
                if self.control:
                    self._pending.append(message)
            elif not extra or self._wanted_data(message):  # else: a default topic's, sent before the unsubscribe
                self._pending.append(message)

    def _wanted_data(self, message: StreamMessage) -> bool:
        data = message.data if isinstance(message.data, dict) else {}
        if message.type == "metrics":
            return "metrics" in self.wanted
        if message.type in ("job_update", "job_progress", "job_deleted"):
            job_id = data.get("id") or data.get("job_id")
            return "jobs" in self.wanted or f"job:{job_id}" in self.wanted
        return True

    async def _send(self, message: dict) -> None:
        if self._ws is None:
            return  # sent again, from `wanted`, once reconnected
        try:
            await self._ws.write_message(json.dumps(message))
        except WebSocketClosedError:
            pass  # the reader notices and reconnects; topics are aligned after the welcome


def _topic_item(topic: str, options: dict) -> str | dict:
    return {"topic": topic, **{k: v for k, v in options.items() if v is not None}} if options else topic


def _parse(text: str | bytes) -> StreamMessage | None:
    try:
        raw = json.loads(text)
    except ValueError:
        return None
    if not isinstance(raw, dict) or not isinstance(raw.get("type"), str):
        return None
    return StreamMessage(raw["type"], raw.get("data"), raw.get("timestamp"), raw.get("seq"))


def _refused(error: HTTPClientError) -> DataHarbourError:
    """The server answered the upgrade with an error (bad token, bad client id)."""
    body = error.response.body if error.response is not None else b""
    message = reason = None
    try:
        data = json.loads(body) if body else None
        if isinstance(data, dict):
            message, reason = data.get("message"), data.get("reason")
    except ValueError:
        pass
    return api_error(error.code, message or f"the live stream refused the connection ({error})", reason)
