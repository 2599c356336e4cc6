"""A `job_log:<id>` subscription: a job's log sent to one client as it grows, by byte offset.

It reads a page only when the client has been sent everything before (so a slow client
gets the log at the pace it reads it) and can be rewound to an offset the client is known
to have reached (after a lag or a resume): no gap, no line twice.
"""

import asyncio
import logging

from ..errors import DataHarbourError
from ..models import LogQuery
from .stream_session import ClientSession

log = logging.getLogger("dataharbour_ext.stream")

LINES_PER_MESSAGE = 500
IDLE_POLL_SECONDS = 0.25


class LogFollower:
    def __init__(self, session: ClientSession, jobs, job_id: str, *, mark_key: str, offset: int, stream: str,
                 attempt: int | None):
        self.session = session
        self.jobs = jobs
        self.job_id = job_id
        self.key = f"job_log:{job_id}"
        self.mark_key = mark_key  # this subscription's offsets in the session's marks
        self.stream = stream
        self.attempt = attempt
        self.start_offset = offset
        self.offset = offset
        self.generation = 0
        self._rewound = asyncio.Event()
        self.task: asyncio.Task | None = None

    def start(self) -> None:
        self.task = asyncio.create_task(self._run(), name=f"dataharbour-{self.key}")

    def stop(self) -> None:
        if self.task:
            self.task.cancel()

    def rewind_to_seen(self, seq: int) -> None:
        """Continue from where a client that has seen messages up to `seq` left off."""
        seen = self.session.log_offset_seen(self.mark_key, seq)
        self.offset = seen if seen is not None else self.start_offset
        self.generation += 1
        self._rewound.set()

    def position(self) -> dict:
        return {"attempt": self.attempt, "stream": self.stream, "offset": self.offset}

    async def _run(self) -> None:
        try:
            while True:
                await self.session.caught_up()
                generation = self.generation
                try:
                    page = await self.jobs.logs(self.job_id, LogQuery(attempt=self.attempt, offset=self.offset,
                                                                      limit=LINES_PER_MESSAGE, stream=self.stream))
                except DataHarbourError as error:
                    self.session.push_data("error", {"topic": self.key, "message": error.message})
                    return
                if generation != self.generation:
                    continue  # rewound while reading: this page may repeat what the client has
                self.attempt = page.attempt
                if page.lines or page.complete:
                    self.session.push("job_log", page.model_dump_json(), log_key=self.mark_key,
                                      next_offset=page.next_offset)
                    self.offset = page.next_offset
                if page.complete:
                    self._rewound.clear()
                    await self._rewound.wait()  # the whole log has gone out; only a rewind restarts it
                elif not page.lines:
                    await asyncio.sleep(IDLE_POLL_SECONDS)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("DataHarbour: following the log of job %s failed", self.job_id)
            self.session.push_data("error", {"topic": self.key, "message": "following this log failed"})
