"""Retention: what is removed as jobs age, once an hour.

- `job_retention_days`: jobs that ended that long ago are deleted, with their runs, their
  folders and (unless `keep_archives_of_deleted_jobs`) their archive.
- `run_folder_retention_days`: the folders of runs that ended that long ago are removed once
  all their files are archived in the object storage; the job stays, and its log is read from
  the archive. A run whose archiving failed or left files out keeps its folder (it holds the
  only copy). Only this host's runs: their folders are here.
"""

import asyncio
import logging
import shutil
from collections.abc import Awaitable, Callable
from datetime import timedelta

from ..errors import Conflict, NotFound
from ..store import JobStore, Owner, RunRecord
from .clock import utcnow
from .job_artifacts import LOG_ARTIFACT
from .job_states import TERMINAL

log = logging.getLogger("dataharbour_ext.jobs")

INTERVAL_SECONDS = 3600.0
FOLDER_REMOVED = "removed"
FOLDER_KEPT = "kept"


class JobRetention:
    def __init__(self, store: JobStore, config, delete_job: Callable[[str], Awaitable[None]], me: Owner):
        self.store = store
        self.me = me
        self.config = config  # the job service's: job_retention_days, run_folder_retention_days
        self.delete_job = delete_job
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        if self.config.job_retention_days > 0 or self.config.run_folder_retention_days > 0:
            self._task = asyncio.create_task(self._loop(), name="dataharbour-retention")

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()

    async def _loop(self) -> None:
        while True:
            try:
                if self.config.job_retention_days > 0 and (removed := await self.remove_expired()):
                    log.info("DataHarbour: removed %d jobs older than %s days", removed,
                             self.config.job_retention_days)
                if self.config.run_folder_retention_days > 0 and (removed := await self.remove_archived_folders()):
                    log.info("DataHarbour: removed the folders of %d archived runs older than %s days", removed,
                             self.config.run_folder_retention_days)
            except Exception:
                log.exception("DataHarbour: removing expired jobs or run folders failed")
            await asyncio.sleep(INTERVAL_SECONDS)

    async def remove_expired(self) -> int:
        """Delete jobs that ended more than `job_retention_days` ago; returns how many."""
        cutoff = utcnow() - timedelta(days=self.config.job_retention_days)
        removed = 0
        for job_id in await self.store.jobs_finished_before(cutoff, TERMINAL):
            try:
                await self.delete_job(job_id)
                removed += 1
            except (Conflict, NotFound):
                pass  # restarted or deleted meanwhile
        return removed

    async def remove_archived_folders(self) -> int:
        """Remove the folders of archived runs that ended more than `run_folder_retention_days`
        ago; returns how many."""
        cutoff = utcnow() - timedelta(days=self.config.run_folder_retention_days)
        removed = 0
        for run in await self.store.run_folders_ended_before(cutoff, TERMINAL, self.me.host):
            if not _wholly_archived(run):
                await self.store.update_run(run.job_id, run.attempt, folder_state=FOLDER_KEPT)
                continue
            await asyncio.to_thread(shutil.rmtree, run.run_dir, True)
            await self.store.update_run(run.job_id, run.attempt, folder_state=FOLDER_REMOVED)
            removed += 1
        return removed


def _wholly_archived(run: RunRecord) -> bool:
    """Its log and every file archived: nothing failed, nothing was left out."""
    return run.artifacts_error is None and any(
        isinstance(a, dict) and a.get("name") == LOG_ARTIFACT for a in run.artifacts or ())
