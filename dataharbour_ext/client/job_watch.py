"""Waiting for a job and following it (state, progress, log) until it ends: over the live
stream, falling back to polling the REST API when the stream cannot be had."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from ..models import TERMINAL_STATES, Job, JobState
from .errors import ConnectionFailed, DataHarbourError, NotFound, StreamClosed
from .stream import AsyncStream, StreamMessage

if TYPE_CHECKING:
    from .async_client import AsyncDataHarbourClient

TERMINAL = frozenset(state.value for state in TERMINAL_STATES)
# While streaming, the job is read again after this long without news about it: a safety net,
# not the way the end is noticed.
RECHECK_SECONDS = 15.0
POLL_DELAYS = (0.25, 0.5, 1.0, 2.0)  # polling fallback: grows while nothing changes


def _is_terminal(state: str | JobState) -> bool:
    return (state.value if isinstance(state, JobState) else state) in TERMINAL


async def wait_for_job(client: AsyncDataHarbourClient, job_id: str, *, timeout: float | None = None) -> Job:
    """The job once it is succeeded, failed, killed or lost (TimeoutError after `timeout` s)."""
    deadline = None if timeout is None else time.monotonic() + timeout
    job = await client.jobs.get(job_id)
    if _is_terminal(job.state):
        return job
    live = await _open_stream(client, [f"job:{job_id}"])
    if live is not None:
        try:
            job = await client.jobs.get(job_id)  # subscribed now: nothing after this read is missed
            while not _is_terminal(job.state):
                message = await live.receive(timeout=_until(deadline, RECHECK_SECONDS))
                _check_deadline(deadline, job_id)
                if message is None or _ends_job(message, job_id):
                    job = await client.jobs.get(job_id)
                elif message.type == "job_deleted" and (message.data or {}).get("id") == job_id:
                    raise NotFound(f"job {job_id!r} was deleted while waiting for it", status=404)
            return job
        except (ConnectionFailed, StreamClosed):
            pass  # the stream went away for good: poll
        finally:
            await live.close()
    delays = iter(POLL_DELAYS)
    while True:
        job = await client.jobs.get(job_id)
        if _is_terminal(job.state):
            return job
        _check_deadline(deadline, job_id)
        await asyncio.sleep(min(next(delays, POLL_DELAYS[-1]), _until(deadline, POLL_DELAYS[-1])))


async def follow_job(client: AsyncDataHarbourClient, job_id: str, *, stream: str = "all", offset: int = 0,
                     ) -> AsyncIterator[StreamMessage]:
    """The job's `job_update`, `job_progress` and `job_log` messages as they come, until it has
    ended and its log has been read to the end (from byte `offset` of the `stream` log)."""
    await client.jobs.get(job_id)  # an unknown job is a NotFound here, not a stream error
    log_topic = f"job_log:{job_id}"
    position = {"offset": offset, "attempt": None}
    live = await _open_stream(client, [f"job:{job_id}", {"topic": log_topic, "offset": offset, "stream": stream}])
    if live is not None:
        try:
            ended = _is_terminal((await client.jobs.get(job_id)).state)
            log_complete = False
            while not (ended and log_complete):
                message = await live.receive(timeout=RECHECK_SECONDS)
                if message is None:
                    ended = _is_terminal((await client.jobs.get(job_id)).state)
                    continue
                data = message.data if isinstance(message.data, dict) else {}
                if message.type == "snapshot":  # the current state after a gap
                    for item in data.get("jobs", []):
                        if item.get("id") == job_id:
                            ended = ended or _is_terminal(item.get("state", ""))
                            yield StreamMessage("job_update", item, message.timestamp, None)
                    continue
                if message.type == "error":
                    if data.get("topic") in (None, log_topic):
                        raise DataHarbourError(f"following job {job_id!r}: {data.get('message')}")
                    continue
                if data.get("id", data.get("job_id")) != job_id:
                    continue
                if message.type == "job_update":
                    ended = _is_terminal(data.get("state", ""))
                elif message.type == "job_log":
                    log_complete = bool(data.get("complete"))
                    position = {"offset": data.get("next_offset", 0), "attempt": data.get("attempt")}
                elif message.type == "job_deleted":
                    raise NotFound(f"job {job_id!r} was deleted while following it", status=404)
                yield message
            return
        except (ConnectionFailed, StreamClosed):
            pass  # the stream went away for good: poll from where the log had got to
        finally:
            await live.close()
    async for message in _poll_job(client, job_id, stream, position["offset"], position["attempt"]):
        yield message


async def _open_stream(client: AsyncDataHarbourClient, topics: list) -> AsyncStream | None:
    """The live stream on `topics`, or None where it cannot be had (no route, not allowed,
    unreachable): then the caller polls."""
    live = client.stream(topics)
    try:
        return await live.open()
    except DataHarbourError:
        await live.close()
        return None


async def _poll_job(client: AsyncDataHarbourClient, job_id: str, stream: str, offset: int, attempt: int | None
                    ) -> AsyncIterator[StreamMessage]:
    state = None
    delays = iter(POLL_DELAYS)
    while True:
        job = await client.jobs.get(job_id)
        if job.state != state:
            state = job.state
            yield StreamMessage("job_update", job.model_dump(mode="json", exclude={"code", "runs"}))
        page = await client.jobs.logs(job_id, offset=offset, attempt=attempt, stream=stream)
        attempt = page.attempt
        if page.lines or page.complete:
            yield StreamMessage("job_log", page.model_dump(mode="json"))
            offset = page.next_offset
        if page.complete and _is_terminal(job.state):
            return
        if page.lines:
            delays = iter(POLL_DELAYS)
        else:
            await asyncio.sleep(next(delays, POLL_DELAYS[-1]))


def _ends_job(message: StreamMessage, job_id: str) -> bool:
    data = message.data if isinstance(message.data, dict) else {}
    if message.type == "job_update":
        return data.get("id") == job_id and _is_terminal(data.get("state", ""))
    if message.type == "snapshot":
        return any(item.get("id") == job_id and _is_terminal(item.get("state", "")) for item in data.get("jobs", []))
    return False


def _until(deadline: float | None, cap: float) -> float:
    return cap if deadline is None else max(0.0, min(cap, deadline - time.monotonic()))


def _check_deadline(deadline: float | None, job_id: str) -> None:
    if deadline is not None and time.monotonic() >= deadline:
        raise TimeoutError(f"job {job_id!r} had not ended when the wait's timeout passed")
