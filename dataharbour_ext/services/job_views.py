"""Job records as API models: the latest run's facts on the job, secrets masked."""

from datetime import datetime

from ..models import Job, JobRun, JobState, redact
from ..store import JobRecord
from .clock import utcnow


def _duration(start: datetime | None, end: datetime | None) -> float | None:
    if start is None:
        return None
    return round(((end or utcnow()) - start).total_seconds(), 3)


def job_view(job: JobRecord, *, detail: bool) -> Job:
    """`detail` adds the program text and every run (GET /jobs/{id}); lists leave them out."""
    runs = [
        JobRun(
            attempt=run.attempt,
            state=JobState(run.state),
            queued_at=run.queued_at,
            started_at=run.started_at,
            finished_at=run.finished_at,
            duration=_duration(run.started_at, run.finished_at),
            exit_code=run.exit_code,
            spark_app_id=run.spark_app_id,
            spark_ui_url=run.spark_ui_url,
            error=run.error,
        )
        for run in job.runs
    ]
    latest = next((run for run in runs if run.attempt == job.attempt), None)
    return Job(
        id=job.id,
        name=job.name,
        cluster_id=job.cluster_id,
        state=JobState(job.state),
        source="file" if job.file else "code",
        file=job.file,
        args=list(job.args),
        conf=redact(job.conf),
        env=redact(job.env),
        created_at=job.created_at,
        updated_at=job.updated_at,
        attempt=job.attempt,
        started_at=latest.started_at if latest else None,
        finished_at=latest.finished_at if latest else None,
        duration=latest.duration if latest else None,
        exit_code=latest.exit_code if latest else None,
        spark_app_id=latest.spark_app_id if latest else None,
        error=latest.error if latest else None,
        code=job.code if detail else None,
        runs=runs if detail else None,
    )
