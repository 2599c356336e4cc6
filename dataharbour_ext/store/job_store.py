"""The job store: jobs and runs in SQL, off the event loop, plain records out.

Every public method is a coroutine that runs its SQL on the store's own small thread pool,
so Jupyter's event loop never waits on the database. State changes are conditional updates
(`transition`, `claim_next`, `adopt`): when two servers share one store, exactly one of
them wins each change, and the loser learns it from the return value.

SQLite (the embedded default) runs in WAL mode with write transactions begun IMMEDIATE, so
that writers from two servers queue up instead of failing; PostgreSQL (psycopg 3) locks a
cluster's admission row while it counts that cluster's active runs.
"""

import getpass
import hashlib
import itertools
import os
import time
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

from sqlalchemy import Connection, Select, and_, create_engine, delete, event, func, insert, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine, make_url

from .migrate import upgrade_to_latest
from .records import JobRecord, Owner, RunRecord
from .store_thread import in_store_thread
from .tables import admission, jobs, runs

ACTIVE_STATES = ("starting", "running")
TERMINAL_STATES = ("succeeded", "failed", "killed", "lost")
# Runs whose length is how long the program ran: a kill cuts it short, and a lost run's end is
# when a server noticed it was gone (a server's downtime would count as running time).
TIMED_STATES = ("succeeded", "failed")
CLAIM_SCAN = 500  # queued runs looked at per claim; their clusters are tried in queue order
# How long a list's `total` may be reused while this server wrote nothing: counting 100,000
# rows costs more than the page itself; another server's writes show within this time.
TOTAL_TTL_SECONDS = 1.0

# A list item: the job without its program, plus the facts of its latest run (one row per
# job through the primary key; never the other runs). Read by position: a list of a
# thousand jobs must cost milliseconds, not a mapping lookup per column.
_SUMMARY_JOB_COLUMNS = [jobs.c[name] for name in (
    "id", "name", "cluster_id", "state", "file", "args", "conf", "env", "attempt", "created_at", "updated_at",
    "log_level", "mode", "notebook",
)]
_SUMMARY_RUN_COLUMNS = [runs.c[name].label("latest_" + name) for name in (
    "attempt", "state", "queued_at", "started_at", "finished_at", "exit_code", "error", "spark_app_id",
    "spark_ui_url", "backend", "archive_pending", "artifacts_error",
)]
_JOB_SUMMARY_FROM = jobs.outerjoin(runs, and_(runs.c.job_id == jobs.c.id, runs.c.attempt == jobs.c.attempt))


def select_job_summaries() -> Select:
    """SELECT of job summaries (rows for `job_summary_record`), to narrow with where/order_by/limit."""
    return select(*_SUMMARY_JOB_COLUMNS, *_SUMMARY_RUN_COLUMNS).select_from(_JOB_SUMMARY_FROM)


def default_tenant() -> str:
    """Whose server this is: the JupyterHub user when there is one (single-user servers on
    Kubernetes may all run as the same uid), else the operating-system user."""
    if hub_user := os.environ.get("JUPYTERHUB_USER"):
        return hub_user
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return f"uid-{os.getuid()}"


def _engine(url: str) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})
        _sqlite_transactions(engine)
        return engine
    if parsed.get_backend_name() == "postgresql" and parsed.get_driver_name() in ("", "psycopg2"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return create_engine(parsed, pool_pre_ping=True, pool_size=8)


def _sqlite_transactions(engine: Engine) -> None:
    """Let SQLAlchemy, not pysqlite, begin transactions, and begin writes IMMEDIATE: a
    write transaction then holds the write lock from its first statement, so a read-then-
    update (admission) cannot interleave with another server's."""

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection, _record):
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        # In WAL mode NORMAL never corrupts the store; a power cut may lose the last commits.
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(connection):
        mode = "IMMEDIATE" if connection.get_execution_options().get("write") else "DEFERRED"
        connection.exec_driver_sql(f"BEGIN {mode}")


def _run_values(run: RunRecord) -> dict:
    values = {
        "job_id": run.job_id,
        "attempt": run.attempt,
        "cluster_id": run.cluster_id,
        "state": run.state,
        "run_dir": run.run_dir,
        "queued_at": run.queued_at,
        "started_at": run.started_at,
        "finished_at": run.finished_at,
        "exit_code": run.exit_code,
        "error": run.error,
        "spark_app_id": run.spark_app_id,
        "spark_ui_url": run.spark_ui_url,
        "pid": run.pid,
        "pid_start_ticks": run.pid_start_ticks,
        "pid_boot_id": run.pid_boot_id,
        "kill_requested": run.kill_requested,
        "backend": run.backend,
        "progress": run.progress,
        "artifacts": run.artifacts,
        "artifacts_error": run.artifacts_error,
        "archive_pending": run.archive_pending,
        "folder_state": run.folder_state,
    }
    values.update(Owner.columns(run.owner))
    return values


def _run_record(row) -> RunRecord:
    m = row._mapping
    return RunRecord(
        job_id=m["job_id"],
        attempt=m["attempt"],
        cluster_id=m["cluster_id"],
        state=m["state"],
        run_dir=m["run_dir"],
        queued_at=m["queued_at"],
        backend=m["backend"] or "spark-submit",
        started_at=m["started_at"],
        finished_at=m["finished_at"],
        exit_code=m["exit_code"],
        error=m["error"],
        spark_app_id=m["spark_app_id"],
        spark_ui_url=m["spark_ui_url"],
        pid=m["pid"],
        pid_start_ticks=m["pid_start_ticks"],
        pid_boot_id=m["pid_boot_id"],
        owner=Owner.from_columns(m),
        owner_seen_at=m["owner_seen_at"],
        kill_requested=bool(m["kill_requested"]),
        progress=m["progress"],
        artifacts=m["artifacts"],
        artifacts_error=m["artifacts_error"],
        archive_pending=bool(m["archive_pending"]),
        folder_state=m["folder_state"],
    )


def _job_record(row, run_rows=()) -> JobRecord:
    m = row._mapping
    return JobRecord(
        id=m["id"],
        name=m["name"],
        cluster_id=m["cluster_id"],
        state=m["state"],
        file=m["file"],
        args=list(m["args"] or []),
        conf=dict(m["conf"] or {}),
        env=dict(m["env"] or {}),
        attempt=m["attempt"],
        created_at=m["created_at"],
        updated_at=m["updated_at"],
        log_level=m["log_level"],
        mode=m["mode"],
        notebook=m["notebook"],
        code=m.get("code"),
        inputs=list(m.get("inputs") or []),
        runs=[_run_record(r) for r in run_rows],
    )


def job_summary_record(row) -> JobRecord:
    """A row of `select_job_summaries()` as a record: the job without its program, its latest run only."""
    (job_id, name, cluster_id, state, file, args, conf, env, attempt, created_at, updated_at, log_level, mode,
     notebook, run_attempt, run_state, queued_at, started_at, finished_at, exit_code, error, app_id, ui_url,
     backend, archive_pending, artifacts_error) = row
    job = JobRecord(id=job_id, name=name, cluster_id=cluster_id, state=state, file=file, args=list(args or []),
                    conf=dict(conf or {}), env=dict(env or {}), attempt=attempt, created_at=created_at,
                    updated_at=updated_at, log_level=log_level, mode=mode, notebook=notebook)
    if run_attempt is not None:
        job.runs = [RunRecord(job_id=job_id, attempt=run_attempt, cluster_id=cluster_id, state=run_state,
                              run_dir="", queued_at=queued_at, started_at=started_at, finished_at=finished_at,
                              exit_code=exit_code, error=error, spark_app_id=app_id, spark_ui_url=ui_url,
                              backend=backend or "spark-submit", archive_pending=bool(archive_pending),
                              artifacts_error=artifacts_error)]
    return job


def _ended_run_seconds(run: RunRecord) -> float | None:
    """The job's `duration` column: its latest run's length once it succeeded or failed, if it started."""
    if run.state in TIMED_STATES and run.started_at is not None and run.finished_at is not None:
        return (run.finished_at - run.started_at).total_seconds()
    return None


class JobStore:
    def __init__(self, url: str, tenant: str | None = None, threads: int = 2):
        self.url = url
        self.tenant = tenant or default_tenant()
        self.engine = _engine(url)
        self.dialect = self.engine.dialect.name
        upgrade_to_latest(self.engine)
        self._generations = itertools.count(1)
        self._generation = 0  # bumped by every write of this store
        self._totals: dict[tuple, tuple[int, float, int]] = {}
        self._adopt_rows_without_tenant()
        self._executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="dataharbour-store")

    def close(self) -> None:
        self._executor.shutdown(wait=True)
        self.engine.dispose()

    @property
    def executor(self) -> ThreadPoolExecutor:
        """The store's thread pool: queries of its tables run there, never on the event loop."""
        return self._executor

    @property
    def write_generation(self) -> int:
        """Changes with every write of this store (not another server's): a result computed at
        one generation is still right at the same one, as far as this server's writes go."""
        return self._generation

    def _adopt_rows_without_tenant(self) -> None:
        """Rows from before tenants (a one-user store) become this server's user's."""
        with self._write() as db:
            for table in (jobs, runs):
                db.execute(update(table).where(table.c.tenant == "").values(tenant=self.tenant))

    @contextmanager
    def _write(self):
        try:
            with self.engine.connect().execution_options(write=True) as connection:
                with connection.begin():
                    yield connection
        finally:
            self._generation = next(self._generations)

    @contextmanager
    def read_connection(self):
        """A connection in a read transaction (one snapshot on SQLite), for queries of this
        store's tables; call it on the store's `executor`, never on the event loop."""
        with self.engine.connect() as connection:
            with connection.begin():
                yield connection

    # ---- jobs ------------------------------------------------------------------------

    @in_store_thread
    def add_job(self, job: JobRecord, run: RunRecord) -> None:
        with self._write() as db:
            db.execute(insert(jobs).values(
                id=job.id, name=job.name, cluster_id=job.cluster_id, state=job.state, code=job.code or "",
                file=job.file, args=job.args, conf=job.conf, env=job.env, attempt=job.attempt,
                created_at=job.created_at, updated_at=job.updated_at, log_level=job.log_level, mode=job.mode,
                notebook=job.notebook, inputs=job.inputs or None, tenant=self.tenant,
                duration=_ended_run_seconds(run) if run.attempt == job.attempt else None,
            ))
            db.execute(insert(runs).values(**_run_values(run), tenant=self.tenant))

    @in_store_thread
    def get_job(self, job_id: str, *, detail: bool = True) -> JobRecord | None:
        with self.read_connection() as db:
            if not detail:
                row = db.execute(select_job_summaries()
                                 .where(jobs.c.id == job_id, jobs.c.tenant == self.tenant)).first()
                return job_summary_record(row) if row else None
            row = db.execute(select(jobs).where(jobs.c.id == job_id, jobs.c.tenant == self.tenant)).first()
            if row is None:
                return None
            run_rows = db.execute(select(runs).where(runs.c.job_id == job_id).order_by(runs.c.attempt)).all()
            return _job_record(row, run_rows)

    @in_store_thread
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
        """One page of job summaries (no program text, no runs) and the total that match."""
        conditions = [jobs.c.tenant == self.tenant]
        if states:
            conditions.append(jobs.c.state.in_(list(states)))
        if cluster_id:
            conditions.append(jobs.c.cluster_id == cluster_id)
        if name:
            escaped = name.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            conditions.append(func.lower(jobs.c.name).like(f"%{escaped}%", escape="\\"))
        column = jobs.c[sort]
        if sort == "name":
            column = func.lower(column)  # alphabetical as people read it, not by code point
        order = [column.desc(), jobs.c.id.desc()] if descending else [column.asc(), jobs.c.id.asc()]
        with self.read_connection() as db:
            total = self._total(db, (tuple(states or ()), cluster_id, name), conditions)
            rows = db.execute(
                select_job_summaries()
                .where(*conditions).order_by(*order).limit(limit).offset(offset)
            ).all()
        return [job_summary_record(row) for row in rows], int(total or 0)

    def _total(self, db: Connection, key: tuple, conditions: list) -> int:
        generation, now = self._generation, time.monotonic()
        cached = self._totals.get(key)
        if cached and cached[0] == generation and now - cached[1] < TOTAL_TTL_SECONDS:
            return cached[2]
        total = int(db.scalar(select(func.count()).select_from(jobs).where(*conditions)) or 0)
        if len(self._totals) > 256:
            self._totals.clear()
        self._totals[key] = (generation, now, total)
        return total

    @in_store_thread
    def new_attempt(self, job_id: str, expected_attempt: int, run: RunRecord, *, from_states: Iterable[str],
                    now: datetime) -> bool:
        """Queue attempt `run.attempt` if the job is still at `expected_attempt` in one of
        `from_states`; False if another request (or server) got there first."""
        with self._write() as db:
            changed = db.execute(
                update(jobs)
                .where(jobs.c.id == job_id, jobs.c.tenant == self.tenant, jobs.c.attempt == expected_attempt,
                       jobs.c.state.in_(list(from_states)))
                .values(attempt=run.attempt, state=run.state, updated_at=now, duration=None)
            ).rowcount
            if changed != 1:
                return False
            db.execute(insert(runs).values(**_run_values(run), tenant=self.tenant))
            return True

    @in_store_thread
    def delete_job(self, job_id: str, *, from_states: Iterable[str]) -> bool:
        """Remove a job and its runs if it is in one of `from_states`."""
        with self._write() as db:
            state = db.scalar(select(jobs.c.state).where(jobs.c.id == job_id, jobs.c.tenant == self.tenant))
            if state is None or state not in set(from_states):
                return False
            db.execute(delete(runs).where(runs.c.job_id == job_id))
            db.execute(delete(jobs).where(jobs.c.id == job_id))
            return True

    @in_store_thread
    def jobs_finished_before(self, cutoff: datetime, states: Iterable[str], limit: int = 500) -> list[str]:
        with self.read_connection() as db:
            rows = db.execute(
                select(jobs.c.id)
                .where(jobs.c.tenant == self.tenant, jobs.c.state.in_(list(states)), jobs.c.updated_at < cutoff)
                .limit(limit)
            ).all()
        return [row[0] for row in rows]

    # ---- runs ------------------------------------------------------------------------

    def _run_is(self, job_id: str, attempt: int):
        return and_(runs.c.job_id == job_id, runs.c.attempt == attempt, runs.c.tenant == self.tenant)

    @in_store_thread
    def get_run(self, job_id: str, attempt: int) -> RunRecord | None:
        with self.read_connection() as db:
            row = db.execute(select(runs).where(self._run_is(job_id, attempt))).first()
        return _run_record(row) if row else None

    @in_store_thread
    def runs_in_states(self, states: Iterable[str], *, owner_instance: str | None = None) -> list[RunRecord]:
        """Runs in the given states (of one owner if given), oldest queued first."""
        query = select(runs).where(runs.c.tenant == self.tenant, runs.c.state.in_(list(states)))
        if owner_instance is not None:
            query = query.where(runs.c.owner_instance == owner_instance)
        with self.read_connection() as db:
            rows = db.execute(query.order_by(runs.c.queued_at, runs.c.job_id)).all()
        return [_run_record(row) for row in rows]

    @in_store_thread
    def runs_to_archive(self, host: str, limit: int = 500) -> list[RunRecord]:
        """Ended runs of `host` (where their folders are) or of no known owner whose files are
        still to be archived, oldest first."""
        with self.read_connection() as db:
            rows = db.execute(
                select(runs).where(runs.c.tenant == self.tenant, runs.c.archive_pending.is_(True),
                                   or_(runs.c.owner_host == host, runs.c.owner_instance.is_(None)))
                .order_by(runs.c.finished_at, runs.c.job_id).limit(limit)
            ).all()
        return [_run_record(row) for row in rows]

    @in_store_thread
    def run_folders_ended_before(self, cutoff: datetime, states: Iterable[str], host: str,
                                 limit: int = 500) -> list[RunRecord]:
        """Ended runs of `host` (where their folders are) or of no known owner, whose folders
        are still there (nothing decided about them yet), that ended before `cutoff`, oldest first."""
        with self.read_connection() as db:
            rows = db.execute(
                select(runs).where(runs.c.tenant == self.tenant, runs.c.state.in_(list(states)),
                                   or_(runs.c.owner_host == host, runs.c.owner_instance.is_(None)),
                                   runs.c.finished_at < cutoff, runs.c.folder_state.is_(None),
                                   runs.c.archive_pending.is_(False))
                .order_by(runs.c.finished_at, runs.c.job_id).limit(limit)
            ).all()
        return [_run_record(row) for row in rows]

    @in_store_thread
    def run_counts(self, states: Iterable[str]) -> dict[tuple[str, str], int]:
        """How many runs of this tenant are in each of `states`, by (cluster id, state)."""
        query = (select(runs.c.cluster_id, runs.c.state, func.count())
                 .where(runs.c.tenant == self.tenant, runs.c.state.in_(list(states)))
                 .group_by(runs.c.cluster_id, runs.c.state))
        with self.read_connection() as db:
            return {(cluster_id, state): int(count) for cluster_id, state, count in db.execute(query).all()}

    @in_store_thread
    def count_active(self, cluster_id: str) -> int:
        with self.read_connection() as db:
            return int(db.scalar(
                select(func.count()).where(runs.c.tenant == self.tenant, runs.c.cluster_id == cluster_id,
                                           runs.c.state.in_(ACTIVE_STATES))
            ) or 0)

    @in_store_thread
    def transition(self, job_id: str, attempt: int, from_states: Iterable[str], to_state: str, *,
                   now: datetime, **values) -> RunRecord | None:
        """Move a run from one of `from_states` to `to_state` (with other column `values`)
        and mirror the state on its job if it is the job's latest attempt. Returns the run
        as it is now, or None if it was not in `from_states` (someone else moved it)."""
        with self._write() as db:
            return self._transition(db, job_id, attempt, from_states, to_state, now, values)

    def _transition(self, db: Connection, job_id, attempt, from_states, to_state, now, values) -> RunRecord | None:
        if "owner" in values:
            values.update(Owner.columns(values.pop("owner")))
        changed = db.execute(
            update(runs)
            .where(self._run_is(job_id, attempt), runs.c.state.in_(list(from_states)))
            .values(state=to_state, **values)
        ).rowcount
        if changed != 1:
            return None
        run = _run_record(db.execute(select(runs).where(self._run_is(job_id, attempt))).first())
        db.execute(
            update(jobs).where(jobs.c.id == job_id, jobs.c.attempt == attempt)
            .values(state=to_state, updated_at=now, duration=_ended_run_seconds(run))
        )
        return run

    @in_store_thread
    def update_run(self, job_id: str, attempt: int, *, touch_job: datetime | None = None, **values) -> None:
        """Set facts about a run that are not state changes (app id, UI address, pid)."""
        if "owner" in values:
            values.update(Owner.columns(values.pop("owner")))
        with self._write() as db:
            db.execute(update(runs).where(self._run_is(job_id, attempt)).values(**values))
            if touch_job is not None:
                db.execute(update(jobs).where(jobs.c.id == job_id, jobs.c.attempt == attempt)
                           .values(updated_at=touch_job))

    @in_store_thread
    def claim_next(self, owner: Owner, limits: Mapping[str, int], default_limit: int, *,
                   now: datetime, clusters: Iterable[str] | None = None) -> RunRecord | None:
        """Take the oldest queued run whose cluster has a free slot: `queued -> starting`,
        owned by `owner`. Only one server can win a run, and a cluster's limit holds across
        servers because its admission row stays locked while its active runs are counted.
        `clusters`: the ids of the clusters the caller knows (None: any); runs on others stay
        queued for a server that knows their cluster (another host's, one added later)."""
        waiting = [runs.c.tenant == self.tenant, runs.c.state == "queued"]
        if clusters is not None:
            waiting.append(runs.c.cluster_id.in_(list(clusters)))
        # The admission loop asks every second: with nothing queued, a read answers without
        # taking the write lock or bumping the write generation (which would expire every
        # cache keyed on it, the dashboard's and the list totals', once a second).
        with self.read_connection() as db:
            if db.scalar(select(runs.c.job_id).where(*waiting).limit(1)) is None:
                return None
        with self._write() as db:
            queued = db.execute(
                select(runs.c.job_id, runs.c.attempt, runs.c.cluster_id)
                .where(*waiting)
                .order_by(runs.c.queued_at, runs.c.job_id)
                .limit(CLAIM_SCAN)
            ).all()
            tried: set[str] = set()
            for job_id, attempt, cluster_id in queued:
                if cluster_id in tried:
                    continue
                tried.add(cluster_id)
                self._lock_admission(db, cluster_id)
                active = db.scalar(
                    select(func.count()).where(runs.c.tenant == self.tenant, runs.c.cluster_id == cluster_id,
                                               runs.c.state.in_(ACTIVE_STATES))
                )
                if active >= limits.get(cluster_id, default_limit):
                    continue
                run = self._transition(db, job_id, attempt, ("queued",), "starting", now,
                                       {"started_at": now, "owner": owner, "owner_seen_at": now})
                if run is not None:
                    return run
            return None

    def _lock_admission(self, db: Connection, cluster_id: str) -> None:
        # One lock per tenant and cluster, under a fixed-length key.
        key = hashlib.sha1(f"{self.tenant}\0{cluster_id}".encode()).hexdigest()
        dialect_insert = postgresql.insert if self.dialect == "postgresql" else sqlite.insert
        db.execute(dialect_insert(admission).values(cluster_id=key).on_conflict_do_nothing())
        if self.dialect == "postgresql":
            db.execute(select(admission.c.cluster_id).where(admission.c.cluster_id == key).with_for_update())

    @in_store_thread
    def heartbeat(self, owner: Owner, now: datetime) -> None:
        """Tell servers on other hosts that this owner still watches its runs."""
        with self._write() as db:
            db.execute(update(runs).where(runs.c.tenant == self.tenant, runs.c.owner_instance == owner.instance,
                                          runs.c.state.in_(ACTIVE_STATES)).values(owner_seen_at=now))

    @in_store_thread
    def adopt(self, job_id: str, attempt: int, previous_instance: str | None, owner: Owner, *,
              now: datetime) -> bool:
        """Become the owner of a run whose previous owner is gone; one server wins."""
        with self._write() as db:
            condition = (runs.c.owner_instance.is_(None) if previous_instance is None
                         else runs.c.owner_instance == previous_instance)
            return db.execute(
                update(runs).where(self._run_is(job_id, attempt), condition)
                .values(**Owner.columns(owner), owner_seen_at=now)
            ).rowcount == 1
