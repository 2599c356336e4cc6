"""SQL access for jobs and runs. Records come back detached and are saved explicitly."""

from collections.abc import Iterable
from datetime import datetime
from pathlib import Path

from sqlalchemy import create_engine, func, select, update
from sqlalchemy.orm import sessionmaker

from .schema import Base, JobRecord, RunRecord

ACTIVE_STATES = ("starting", "running")


class JobStore:
    def __init__(self, url: str):
        if url.startswith("sqlite:///"):
            Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        self.engine = create_engine(url)
        Base.metadata.create_all(self.engine)
        self._session = sessionmaker(self.engine, expire_on_commit=False)

    def close(self) -> None:
        self.engine.dispose()

    def save(self, *records: JobRecord | RunRecord) -> None:
        with self._session.begin() as session:
            for record in records:
                session.merge(record)

    def save_run(self, run: RunRecord, *, now: datetime) -> None:
        """Save a run and mirror its state onto its job when it is the job's latest run."""
        with self._session.begin() as session:
            session.merge(run)
            session.execute(
                update(JobRecord)
                .where(JobRecord.id == run.job_id, JobRecord.attempt == run.attempt)
                .values(state=run.state, updated_at=now)
            )

    def add_job(self, job: JobRecord, run: RunRecord) -> None:
        with self._session.begin() as session:
            session.add(job)
            session.add(run)

    def get_job(self, job_id: str) -> JobRecord | None:
        with self._session() as session:
            return session.get(JobRecord, job_id)

    def get_run(self, job_id: str, attempt: int) -> RunRecord | None:
        with self._session() as session:
            return session.get(RunRecord, (job_id, attempt))

    def list_jobs(
        self,
        *,
        states: Iterable[str] | None,
        cluster_id: str | None,
        name: str | None,
        sort: str,
        descending: bool,
        limit: int,
        offset: int,
    ) -> tuple[list[JobRecord], int]:
        query = select(JobRecord)
        if states:
            query = query.where(JobRecord.state.in_(list(states)))
        if cluster_id:
            query = query.where(JobRecord.cluster_id == cluster_id)
        if name:
            escaped = name.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            query = query.where(func.lower(JobRecord.name).like(f"%{escaped}%", escape="\\"))
        column = getattr(JobRecord, sort)
        if sort == "name":
            column = func.lower(column)  # alphabetical as people read it, not by code point
        order = [column.desc() if descending else column.asc(), JobRecord.id]
        with self._session() as session:
            total = session.scalar(select(func.count()).select_from(query.subquery()))
            rows = session.scalars(query.order_by(*order).limit(limit).offset(offset)).all()
            return list(rows), int(total or 0)

    def runs_in_states(self, states: Iterable[str]) -> list[RunRecord]:
        """Runs in the given states, oldest queued first (the queue order)."""
        query = select(RunRecord).where(RunRecord.state.in_(list(states)))
        with self._session() as session:
            return list(session.scalars(query.order_by(RunRecord.queued_at, RunRecord.job_id)).all())

    def count_active(self, cluster_id: str) -> int:
        query = select(func.count()).where(RunRecord.cluster_id == cluster_id, RunRecord.state.in_(ACTIVE_STATES))
        with self._session() as session:
            return int(session.scalar(query) or 0)
