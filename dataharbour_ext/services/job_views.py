"""Job records as API models: the latest run's facts on the job, secrets masked."""

from datetime import datetime

from pydantic import ValidationError

from ..models import Job, JobArtifact, JobInput, JobProgress, JobRun, JobState, JobSummary, as_utc, redact
from ..runs.backend import CONNECT_BACKEND, NOTEBOOK_BACKEND
from ..secrets import REDACTED, is_secret_name
from ..store import JobRecord, RunRecord
from .clock import utcnow


def _duration(start: datetime | None, end: datetime | None) -> float | None:
    if start is None:
        return None
    return round(((end or utcnow()) - start).total_seconds(), 3)


def progress_view(progress: dict | None) -> JobProgress | None:
    if not progress:
        return None
    try:
        return JobProgress.model_validate(progress)
    except ValidationError:
        return None  # written by an older or foreign server: not worth failing a read for


def run_mode(backend: str) -> str:
    return {CONNECT_BACKEND: "connect", NOTEBOOK_BACKEND: "notebook"}.get(backend, "batch")


def run_view(run: RunRecord) -> JobRun:
    # Built from the store's own records: nothing to validate, and lists build thousands.
    return JobRun.model_construct(
        attempt=run.attempt,
        state=JobState(run.state),
        mode=run_mode(run.backend),
        queued_at=as_utc(run.queued_at),
        started_at=as_utc(run.started_at),
        finished_at=as_utc(run.finished_at),
        duration=_duration(run.started_at, run.finished_at),
        exit_code=run.exit_code,
        spark_app_id=run.spark_app_id,
        spark_ui_url=run.spark_ui_url,
        error=run.error,
        progress=progress_view(run.progress),
        artifacts=artifacts_view(run.artifacts),
        artifacts_error=run.artifacts_error,
        archiving=run.archive_pending,
    )


def artifacts_view(artifacts: list[dict] | None) -> list[JobArtifact] | None:
    if artifacts is None:
        return None
    return [JobArtifact.model_construct(name=a.get("name"), uri=a.get("uri"), size=a.get("size")) for a in artifacts
            if isinstance(a, dict)]


def _summary_fields(job: JobRecord, latest: JobRun | None, live_progress: dict | None) -> dict:
    return dict(
        id=job.id,
        name=job.name,
        cluster_id=job.cluster_id,
        state=JobState(job.state),
        source="notebook" if job.notebook else "file" if job.file else "code",
        file=job.file,
        notebook=job.notebook["path"] if job.notebook else None,
        parameters=_parameters_view(job.notebook["parameters"]) if job.notebook else None,
        args=list(job.args),
        conf=redact(job.conf),
        env=redact(job.env),
        created_at=as_utc(job.created_at),
        updated_at=as_utc(job.updated_at),
        attempt=job.attempt,
        mode=latest.mode if latest else "batch",
        requested_mode=job.mode,
        started_at=latest.started_at if latest else None,
        finished_at=latest.finished_at if latest else None,
        duration=latest.duration if latest else None,
        exit_code=latest.exit_code if latest else None,
        spark_app_id=latest.spark_app_id if latest else None,
        error=latest.error if latest else None,
        progress=progress_view(live_progress) or (latest.progress if latest else None),
        archiving=latest.archiving if latest else False,
        artifacts_error=latest.artifacts_error if latest else None,
    )


def _parameters_view(parameters: dict) -> dict:
    """Parameters as shown: values of secret-looking names masked, as conf and env are."""
    return {name: REDACTED if is_secret_name(name) else value for name, value in parameters.items()}


def job_summary_view(job: JobRecord, live_progress: dict | None = None) -> JobSummary:
    """A list item: no program text and no runs; the latest run's facts come with the
    record (the store reads that one run only)."""
    latest = next((run_view(run) for run in job.runs if run.attempt == job.attempt), None)
    return JobSummary.model_construct(**_summary_fields(job, latest, live_progress))


def job_view(job: JobRecord, live_progress: dict | None = None) -> Job:
    """GET /jobs/{id}: everything, with the program text and every run."""
    runs = [run_view(run) for run in job.runs]
    latest = next((run for run in runs if run.attempt == job.attempt), None)
    return Job(**_summary_fields(job, latest, live_progress), code=job.code, runs=runs,
               inputs=[JobInput.model_construct(uri=item.get("uri"), as_=item.get("as")) for item in job.inputs],
               artifacts=latest.artifacts if latest else None)
