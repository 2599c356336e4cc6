"""LiveStream: the hub's events to each connected client, by topic, numbered, resumable.

Tornado-free: the WebSocket handler attaches a connection to a session, sends what
`ClientSession.outgoing` yields and hands over what the client sends. Sessions outlive their
connection for `session_ttl` seconds, so a client that reconnects with `since_seq` picks up
where it left off.

Client -> server (JSON objects):
    {"type": "subscribe", "topics": ["jobs", "job:<id>", {"topic": "job_log:<id>", "offset": 0,
                                                          "stream": "all", "attempt": 1}]}
    {"type": "unsubscribe", "topics": [...]}
    {"type": "ping"}
Server -> client: {"type", "data", "timestamp", "seq"}; besides the hub's event types:
    welcome, subscribed, unsubscribed, pong, error, lagged, snapshot.
"""

import asyncio
import json
import logging
import re
from dataclasses import dataclass

from ..errors import DataHarbourError
from ..events import Event, EventHub
from ..models import JobQuery, JobState
from .job_states import ACTIVE
from .log_follower import LogFollower
from .stream_session import ClientSession

log = logging.getLogger("dataharbour_ext.stream")

CLIENT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._~-]{0,127}$")
JOB_ID = r"[A-Za-z0-9_-]{1,64}"
EVENT_TOPIC = re.compile(rf"^(jobs|metrics|clusters|services|job:{JOB_ID})$")
# What GET /monitoring/* shows (permission `read` on dataharbour:monitoring), what GET
# /clusters shows (`read` on dataharbour:clusters); every other topic shows what GET /jobs
# shows (`read` on dataharbour:jobs).
MONITORING_TOPICS = frozenset({"metrics", "services"})
CLUSTER_TOPICS = frozenset({"clusters"})
LOG_TOPIC = re.compile(rf"^job_log:({JOB_ID})$")
MAX_MESSAGE_BYTES = 64 * 1024
MAX_TOPICS = 200
MAX_LOG_SUBSCRIPTIONS = 20
RECENT_JOBS_IN_SNAPSHOT = 50
MAX_NAMED_JOBS_IN_SNAPSHOT = 1000


@dataclass
class StreamConfig:
    ring_size: int = 1000  # messages kept per client for a resume
    ring_bytes: int = 8 * 1024 * 1024
    max_backlog: int = 1000  # messages a client may be behind before it is skipped forward (the ring's size)
    session_ttl: float = 300.0  # seconds a session waits for its client to come back
    max_sessions: int = 10_000


class ClientMessageError(Exception):
    """A client's message the stream refuses; `topic` names the topic it is about, if one."""

    def __init__(self, message: str, topic: str | None = None):
        super().__init__(message)
        self.topic = topic


class LiveStream:
    def __init__(self, hub: EventHub, jobs, config: StreamConfig | None = None):
        self.hub = hub
        self.jobs = jobs
        self.config = config or StreamConfig()
        self._sessions: dict[str, ClientSession] = {}
        self._followers: dict[ClientSession, dict[str, LogFollower]] = {}
        self._unsubscribe = None
        self._reaper: asyncio.Task | None = None
        self._follower_count = 0
        self.stopped = False

    # ---- lifecycle -------------------------------------------------------------------

    def start(self) -> None:
        self._unsubscribe = self.hub.subscribe(self._on_event)
        self._reaper = asyncio.create_task(self._reap_loop(), name="dataharbour-stream-reaper")

    async def stop(self) -> None:
        self.stopped = True
        if self._unsubscribe:
            self._unsubscribe()
        if self._reaper:
            self._reaper.cancel()
        for session in list(self._sessions.values()):
            self._drop(session)

    @staticmethod
    def valid_client_id(client_id: str) -> bool:
        return bool(CLIENT_ID.match(client_id))

    # ---- connections -----------------------------------------------------------------

    async def connect(self, user: str, client_id: str, since_seq: int | None, *, session_id: str | None = None,
                      can_read_jobs: bool = True, can_read_monitoring: bool = True,
                      can_read_clusters: bool = True) -> tuple[ClientSession, int]:
        """The session for this connection, and the connection's number in it.

        Sessions are found by client id: with token authentication Jupyter may name the user
        anew on every request, and a resume must still find its session. Anyone who may use
        this server's token can run code as its user anyway; a client that names the
        session it had (`session` from `welcome`) is protected from a re-created one."""
        loop_time = asyncio.get_running_loop().time()
        session = self._sessions.get(client_id)
        # A resume carries on what the session was allowed to see: only for a connection
        # allowed the same (else it starts afresh, with what this one may read).
        rights = (can_read_jobs, can_read_monitoring, can_read_clusters)
        same_rights = session is not None and (
            session.can_read_jobs, session.can_read_monitoring, session.can_read_clusters) == rights
        if since_seq is not None and same_rights and session_id in (None, session.id):
            connection = session.attach(loop_time)
            if session.has_since(since_seq):
                session.sent_seq = since_seq
                session.push_data("welcome", self._welcome(session, resumed=True))
            else:  # the missed messages are gone: what the client needs is the current state
                await self._skip_forward(session, connection, since_seq, "messages since since_seq are gone")
            return session, connection
        if session is not None:
            self._drop(session)  # a fresh start under a known id
        if len(self._sessions) >= self.config.max_sessions:
            self._drop_oldest_detached()
        session = ClientSession(user, client_id, ring_size=self.config.ring_size,
                                ring_bytes=self.config.ring_bytes, max_backlog=self.config.max_backlog)
        session.can_read_jobs = can_read_jobs
        session.can_read_monitoring = can_read_monitoring
        session.can_read_clusters = can_read_clusters
        if not can_read_jobs:
            session.topics.discard("jobs")
        if not can_read_monitoring:
            session.topics -= MONITORING_TOPICS
        if not can_read_clusters:
            session.topics -= CLUSTER_TOPICS
        self._sessions[client_id] = session
        connection = session.attach(loop_time)
        if since_seq is None:
            session.push_data("welcome", self._welcome(session, resumed=False))
        else:  # it asked to resume a session this server does not have (any more)
            await self._skip_forward(session, connection, 0, "this server has no such session", known=False)
        return session, connection

    def disconnect(self, session: ClientSession, connection: int) -> None:
        session.detach(connection, asyncio.get_running_loop().time())

    async def on_lag(self, session: ClientSession, connection: int) -> None:
        """The client fell too far behind: skip it forward to a snapshot."""
        await self._skip_forward(session, connection, session.sent_seq, "lagged", lagged=True)

    async def _skip_forward(self, session: ClientSession, connection: int, seen_seq: int, reason: str, *,
                            lagged: bool = False, known: bool = True) -> None:
        """Replace what the client missed after `seen_seq` with the current state: `lagged`
        (or `welcome`), then a `snapshot`, then the whole-state messages published while
        the snapshot was read (they may be newer than what it read). Logs go on from the
        offset the client had reached."""
        session.lagging = True
        try:
            mark = session.seq
            # Jobs the skipped messages were about; if some of those are gone from the
            # ring, the snapshot cannot name them all and says so.
            complete = known and session.has_since(seen_seq)
            subjects = {e.subject for e in session.entries_after(seen_seq) if e.subject and e.seq <= mark}
            snapshot = await self._snapshot(session, reason, subjects)
            if not session.is_current(connection):
                return  # another connection took the session over meanwhile
            during = _latest_per_subject([e for e in session.entries_after(mark) if e.resendable])
            session.sent_seq = session.seq
            if lagged:
                session.push_data("lagged", {"missed_from_seq": seen_seq + 1, "missed_to_seq": session.seq})
            else:
                session.push_data("welcome", self._welcome(session, resumed=False))
            logs = {}
            for follower in self._followers.get(session, {}).values():
                follower.rewind_to_seen(seen_seq)
                session.mark_log_offset(follower.mark_key, follower.offset)
                logs[follower.job_id] = follower.position()
            snapshot_json = await asyncio.to_thread(_snapshot_json, snapshot, logs, complete)
            session.push("snapshot", snapshot_json)
            for entry in during:
                session.push(entry.type, entry.data_json, entry.timestamp, subject=entry.subject)
        finally:
            session.lagging = False

    # ---- what clients send -----------------------------------------------------------

    async def receive(self, session: ClientSession, text: str | bytes) -> None:
        async with session.receiving:
            try:
                await self._receive(session, text)
            except Exception:
                log.exception("DataHarbour: handling a live-stream message from %s failed", session.client_id)
                session.push_data("error", {"message": "the server could not handle this message"})

    async def _receive(self, session: ClientSession, text: str | bytes) -> None:
        try:
            message = self._parse(text)
            kind = message["type"]
            if kind == "ping":
                session.push_data("pong", {"id": message.get("id")})
            elif kind == "subscribe":
                await self._subscribe(session, message)
            elif kind == "unsubscribe":
                self._unsubscribe_topics(session, message)
        except ClientMessageError as error:
            session.push_data("error", {"message": str(error), **({"topic": error.topic} if error.topic else {})})

    def _parse(self, text: str | bytes) -> dict:
        if isinstance(text, bytes):
            raise ClientMessageError("messages are JSON text, not binary")
        if len(text) > MAX_MESSAGE_BYTES:
            raise ClientMessageError(f"message is larger than {MAX_MESSAGE_BYTES} bytes")
        try:
            message = json.loads(text)
        except (ValueError, RecursionError):
            raise ClientMessageError("message is not valid JSON") from None
        if not isinstance(message, dict):
            raise ClientMessageError("message must be a JSON object")
        kind = message.get("type")
        if kind not in ("subscribe", "unsubscribe", "ping"):
            raise ClientMessageError(f"unknown message type {kind!r}: expected subscribe, unsubscribe or ping")
        if kind != "ping":
            topics = message.get("topics")
            if not isinstance(topics, list) or not topics:
                raise ClientMessageError("topics: a non-empty list is required")
            if len(topics) > MAX_TOPICS:
                raise ClientMessageError(f"topics: at most {MAX_TOPICS} at once")
        return message

    async def _subscribe(self, session: ClientSession, message: dict) -> None:
        wanted = [_topic_request(item) for item in message["topics"]]  # all valid, or none taken
        for topic, _ in wanted:
            if topic in MONITORING_TOPICS and not session.can_read_monitoring:
                raise ClientMessageError(f"{topic}: not authorized to read monitoring (dataharbour:monitoring)", topic)
            if topic in CLUSTER_TOPICS and not session.can_read_clusters:
                raise ClientMessageError("not authorized to read clusters (dataharbour:clusters)", topic)
            if topic not in MONITORING_TOPICS | CLUSTER_TOPICS and not session.can_read_jobs:
                raise ClientMessageError("not authorized to read jobs (dataharbour:jobs)", topic)
        for topic, _ in wanted:
            if topic.startswith(("job:", "job_log:")):
                await self._require_job(topic.split(":", 1)[1])
        if self._sessions.get(session.client_id) is not session:
            return  # dropped while the jobs were looked up
        followers = self._followers.setdefault(session, {})
        new_logs = {topic for topic, _ in wanted if LOG_TOPIC.match(topic)} - set(followers)
        if len(followers) + len(new_logs) > MAX_LOG_SUBSCRIPTIONS:
            raise ClientMessageError(f"at most {MAX_LOG_SUBSCRIPTIONS} job_log subscriptions per client")
        for topic, options in wanted:
            if EVENT_TOPIC.match(topic):
                session.topics.add(topic)
                continue
            job_id = LOG_TOPIC.match(topic).group(1)
            if old := followers.pop(topic, None):
                old.stop()
            self._follower_count += 1
            follower = LogFollower(session, self.jobs, job_id, mark_key=f"{topic}#{self._follower_count}", **options)
            followers[topic] = follower
            follower.start()
        session.push_data("subscribed", {"topics": sorted([*session.topics, *followers])})

    def _unsubscribe_topics(self, session: ClientSession, message: dict) -> None:
        followers = self._followers.get(session, {})
        for item in message["topics"]:
            topic, _ = _topic_request(item)
            session.topics.discard(topic)
            if follower := followers.pop(topic, None):
                follower.stop()
        session.push_data("unsubscribed", {"topics": sorted([*session.topics, *followers])})

    async def _require_job(self, job_id: str) -> None:
        try:
            await self.jobs.get(job_id)
        except DataHarbourError as error:
            raise ClientMessageError(error.message) from None

    # ---- fan-out ---------------------------------------------------------------------

    def _on_event(self, event: Event) -> None:
        data_json: str | None = None
        subject = next((topic[4:] for topic in event.topics if topic.startswith("job:")), None)
        for session in self._sessions.values():
            if session.topics.isdisjoint(event.topics):
                continue
            if data_json is None:  # serialized once for every client
                data_json = json.dumps(event.data, ensure_ascii=False)
            session.push(event.type, data_json, event.timestamp, subject=subject)

    # ---- state for a client that lost messages ---------------------------------------

    async def _snapshot(self, session: ClientSession, reason: str, subjects: set[str]) -> dict:
        """The current state of what the session follows: active jobs, the most recently
        updated ones, and every job named in `subjects` or a `job:<id>` topic."""
        jobs: dict = {}
        if "jobs" in session.topics:
            active = await self.jobs.list(JobQuery(state=[JobState(s) for s in ("queued", *ACTIVE)], limit=1000))
            recent = await self.jobs.list(JobQuery(sort="updated_at", limit=RECENT_JOBS_IN_SNAPSHOT))
            for job in [*active.jobs, *recent.jobs]:
                jobs[job.id] = job
        wanted = {topic[4:] for topic in session.topics if topic.startswith("job:")} | subjects
        for job_id in sorted(wanted - set(jobs))[:MAX_NAMED_JOBS_IN_SNAPSHOT]:
            try:
                jobs[job_id] = await self.jobs.get(job_id)
            except DataHarbourError:
                pass  # deleted: absent from the snapshot (its job_deleted message is resent)
        followers = self._followers.get(session, {})
        return {"reason": reason, "topics": sorted([*session.topics, *followers]), "jobs": list(jobs.values())}

    def _welcome(self, session: ClientSession, *, resumed: bool) -> dict:
        return {"client_id": session.client_id, "session": session.id, "resumed": resumed,
                "topics": sorted([*session.topics, *self._followers.get(session, {})])}

    # ---- sessions nobody came back for -----------------------------------------------

    def _drop(self, session: ClientSession) -> None:
        for follower in self._followers.pop(session, {}).values():
            follower.stop()
        session.connection += 1  # its writer, if any, stops
        session.detach(session.connection, 0.0)
        self._sessions.pop(session.client_id, None)

    def _drop_oldest_detached(self) -> None:
        detached = [s for s in self._sessions.values() if not s.attached]
        if detached:
            self._drop(min(detached, key=lambda s: s.detached_at or 0.0))

    async def _reap_loop(self) -> None:
        while True:
            await asyncio.sleep(min(30.0, self.config.session_ttl))
            now = asyncio.get_running_loop().time()
            for session in list(self._sessions.values()):
                if not session.attached and session.detached_at is not None \
                        and now - session.detached_at > self.config.session_ttl:
                    self._drop(session)


def _snapshot_json(snapshot: dict, logs: dict, complete: bool) -> str:
    """On a worker thread: a thousand job views are CPU work."""
    jobs = [job.model_dump(mode="json", exclude={"code", "runs"}) for job in snapshot["jobs"]]
    return json.dumps({**snapshot, "jobs": jobs, "logs": logs, "complete": complete}, ensure_ascii=False)


def _latest_per_subject(entries: list) -> list:
    """Of several whole-state messages of one type about one job, the last is enough."""
    latest = {}
    for entry in entries:
        latest[(entry.type, entry.subject) if entry.subject else (entry.seq,)] = entry
    return sorted(latest.values(), key=lambda entry: entry.seq)


def _topic_request(item) -> tuple[str, dict]:
    """A topic as the client wrote it: a string, or an object with a log's offset."""
    if isinstance(item, str):
        topic, options = item, {}
    elif isinstance(item, dict) and isinstance(item.get("topic"), str):
        topic, options = item["topic"], {k: v for k, v in item.items() if k != "topic"}
    else:
        raise ClientMessageError("topics: each topic is a string or an object with a 'topic' string")
    if EVENT_TOPIC.match(topic):
        if options:
            raise ClientMessageError(f"{topic}: takes no options")
        return topic, {}
    if not LOG_TOPIC.match(topic):
        raise ClientMessageError(
            f"unknown topic {topic[:100]!r}: expected jobs, metrics, clusters, services, job:<id> or job_log:<id>"
        )
    unknown = set(options) - {"offset", "stream", "attempt"}
    if unknown:
        raise ClientMessageError(f"{topic}: unknown option {sorted(unknown)[0]!r}")
    offset = options.get("offset", 0)
    attempt = options.get("attempt")
    stream = options.get("stream", "all")
    if not isinstance(offset, int) or isinstance(offset, bool) or offset < 0:
        raise ClientMessageError(f"{topic}: offset must be a byte offset (an integer >= 0)")
    if attempt is not None and (not isinstance(attempt, int) or isinstance(attempt, bool) or attempt < 1):
        raise ClientMessageError(f"{topic}: attempt must be an integer >= 1")
    if stream not in ("all", "stdout"):
        raise ClientMessageError(f"{topic}: stream must be 'all' or 'stdout'")
    return topic, {"offset": offset, "stream": stream, "attempt": attempt}

