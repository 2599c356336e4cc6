"""Persistence: job records and runs in SQL (SQLite by default, PostgreSQL), run logs on disk."""

from .job_store import JobStore
from .records import JobRecord, Owner, RunRecord

__all__ = ["JobStore", "JobRecord", "Owner", "RunRecord"]
