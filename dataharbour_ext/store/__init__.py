"""Persistence: job records and runs in SQL (SQLite by default), run logs on disk."""

from .job_store import JobStore
from .schema import JobRecord, RunRecord

__all__ = ["JobStore", "JobRecord", "RunRecord"]
