"""The live stream's per-client bookkeeping, without a server: numbering, resume, log offsets."""

import asyncio

from dataharbour_ext.services.live_stream import _latest_per_subject
from dataharbour_ext.services.log_follower import LogFollower
from dataharbour_ext.services.stream_session import ClientSession


def _session(ring_size=5) -> ClientSession:
    return ClientSession("user", "client", ring_size=ring_size, ring_bytes=1 << 20, max_backlog=ring_size)


async def test_messages_are_numbered_and_a_resume_needs_them_all_in_the_ring():
    session = _session(ring_size=3)
    for n in range(5):
        session.push("job_update", f'{{"n":{n}}}')
    assert [entry.seq for entry in session.ring] == [3, 4, 5]
    assert session.ring[-1].text.endswith('"seq":5}') and '"data":{"n":4}' in session.ring[-1].text
    assert session.has_since(2) and session.has_since(5)
    assert not session.has_since(1), "message 2 is gone"
    assert not session.has_since(6), "a seq this session never sent"


async def test_a_log_rewound_twice_resumes_from_what_was_sent():
    """A second lag before the follower re-read must not jump over the chunks skipped by the first."""
    session = _session(ring_size=100)
    follower = LogFollower(session, None, "j", mark_key="job_log:j#1", offset=0, stream="all", attempt=None)
    session.push("job_log", "{}", log_key=follower.mark_key, next_offset=100)
    session.sent_seq = 1  # sent
    session.push("job_log", "{}", log_key=follower.mark_key, next_offset=200)  # never sent: lag
    follower.rewind_to_seen(session.sent_seq)
    session.push("lagged", "{}")
    session.mark_log_offset(follower.mark_key, follower.offset)
    session.sent_seq = session.seq
    assert follower.offset == 100
    follower.rewind_to_seen(session.sent_seq)  # lags again before reading on
    assert follower.offset == 100
    other = LogFollower(session, None, "j", mark_key="job_log:j#2", offset=7, stream="stdout", attempt=None)
    other.rewind_to_seen(session.seq)
    assert other.offset == 7, "another subscription's offsets (another file) are not this one's"


async def test_only_the_last_whole_state_message_per_job_is_sent_again():
    session = _session(ring_size=10)
    for state in ("starting", "running"):
        session.push("job_update", f'"{state}"', subject="a")
    session.push("job_progress", "1", subject="a")
    session.push("job_update", '"queued"', subject="b")
    session.push("pong", "{}")
    kept = _latest_per_subject(list(session.ring))
    assert [(entry.type, entry.data_json) for entry in kept] == [
        ("job_update", '"running"'), ("job_progress", "1"), ("job_update", '"queued"'), ("pong", "{}")]


async def test_the_writer_stops_when_the_session_is_taken_over():
    session = _session()
    first = session.attach(0.0)
    session.push("welcome", "{}")
    sent = []

    async def write(connection):
        async for batch in session.outgoing(connection, on_lag=None):
            sent.extend(batch)

    writer = asyncio.create_task(write(first))
    await asyncio.sleep(0)
    session.attach(1.0)  # another connection
    await asyncio.wait_for(writer, 5)
    assert len(sent) == 1
