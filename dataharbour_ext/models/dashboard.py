"""The dashboard: job statistics, completion trends per day, and both with the recent jobs."""

import re
import zoneinfo

from pydantic import BaseModel, ConfigDict, Field, field_validator

from .jobs import JobSummary

DEFAULT_TREND_DAYS = 14
MAX_TREND_DAYS = 365
RECENT_JOBS = 10
_ZONE_NAME = re.compile(r"[A-Za-z0-9_+\-]+(/[A-Za-z0-9_+\-]+)*")


def time_zone(name: str) -> zoneinfo.ZoneInfo:
    """The IANA time zone called `name` (Europe/Paris, UTC, America/Argentina/Buenos_Aires)."""
    # The pattern keeps paths and odd text away from the tz database lookup.
    if len(name) > 64 or not _ZONE_NAME.fullmatch(name):
        raise ValueError(f"unknown time zone {name!r} (expected an IANA name such as Europe/Paris)")
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        raise ValueError(f"unknown time zone {name!r} (expected an IANA name such as Europe/Paris)") from None


class TrendsQuery(BaseModel):
    """Query string of `GET /dashboard/trends` and `GET /dashboard/overview`."""

    model_config = ConfigDict(extra="forbid")

    days: int = Field(DEFAULT_TREND_DAYS, ge=1, le=MAX_TREND_DAYS,
                      description="How many days to show, today included.")
    tz: str | None = Field(
        None,
        description="IANA time zone the days are counted in (Europe/Paris); UTC when not given.",
        examples=["Europe/Paris"],
    )

    @field_validator("tz")
    @classmethod
    def _known_time_zone(cls, value: str | None) -> str | None:
        if value is not None:
            time_zone(value)
        return value


class JobStateCounts(BaseModel):
    """Jobs in each state (every state present, 0 when none)."""

    queued: int
    starting: int
    running: int
    succeeded: int
    failed: int
    killed: int
    lost: int


class DashboardStats(BaseModel):
    """How this server's jobs have been going, its clusters, and its notebooks."""

    total_jobs: int = Field(description="Jobs in the store (this server's user's), whatever their state.")
    jobs_by_state: JobStateCounts = Field(description="Jobs by the state of their latest run.")
    finished_jobs: int = Field(description="Jobs that have ended: succeeded + failed + killed + lost.")
    success_rate: float | None = Field(
        description="succeeded / finished_jobs, from 0 to 1; null when no job has finished."
    )
    timed_jobs: int = Field(
        description="Jobs whose latest run started and then succeeded or failed: the jobs the durations are "
        "computed over. Killed and lost runs are left out: a kill cuts a run short, and a lost run's "
        "finished_at is when a server noticed it was gone, not when the program ended."
    )
    mean_duration: float | None = Field(
        description="Mean of the timed jobs' latest-run durations (finished_at - started_at), in seconds; null "
        "when there are none (succeeded and failed runs only)."
    )
    p95_duration: float | None = Field(
        description="95th percentile (nearest rank) of the same durations (succeeded and failed runs only), in "
        "seconds; null when there are none."
    )
    active_clusters: int = Field(description="Known clusters with at least one job starting or running.")
    known_clusters: int = Field(description="Clusters jobs can be submitted to.")
    notebooks: int = Field(
        description="Notebooks (.ipynb) under the Jupyter root, as the file browser shows them (hidden files "
        "and folders left out); counted again in the background once the count is older than "
        "DataHarbourApp.dashboard_notebook_cache_seconds (60)."
    )
    notebooks_truncated: bool = Field(
        description="The count stopped at DataHarbourApp.dashboard_notebook_scan_limit entries: there are at "
        "least `notebooks`."
    )


class TrendPoint(BaseModel):
    date: str = Field(description="The day, YYYY-MM-DD, in the trend's time zone.", examples=["2026-01-31"])
    succeeded: int = Field(description="Runs that succeeded that day.")
    failed: int = Field(
        description="Runs that ended without success that day: failed, killed or lost (as the success rate "
        "counts them)."
    )


class DashboardTrends(BaseModel):
    """Job completions per day: every run that ended counts on the day it ended (a job that failed and was
    restarted shows its failure and its later result), oldest day first, today last, days without any 0."""

    days: int = Field(description="Number of days shown, today included.")
    tz: str = Field(description="Time zone of the days: the `tz` asked for, else UTC.")
    points: list[TrendPoint] = Field(description="One point per day, `days` of them, oldest first.")


class DashboardOverview(BaseModel):
    stats: DashboardStats
    trends: DashboardTrends
    recent_jobs: list[JobSummary] = Field(
        description=f"The {RECENT_JOBS} most recently updated jobs, newest first, as `GET /jobs/` lists them."
    )
