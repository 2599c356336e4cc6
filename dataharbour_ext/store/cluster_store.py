"""Clusters in SQL: those launched here (with their daemons, to re-attach after a restart)
and the external masters registered. Shares the job store's engine and thread pool (cluster
changes are rare); every method runs there, never on the event loop."""

from collections.abc import Iterable
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import delete, func, insert, or_, select, update

from .job_store import JobStore
from .records import Owner
from .store_thread import in_store_thread
from .tables import clusters


@dataclass
class DaemonRecord:
    """One daemon of a launched cluster: its role and run folder, and who its supervisor is."""

    name: str  # "master", "worker-1", ...
    run_dir: str
    pid: int | None = None
    start_ticks: int | None = None
    boot_id: str | None = None

    def to_json(self) -> dict:
        return {"name": self.name, "run_dir": self.run_dir, "pid": self.pid, "start_ticks": self.start_ticks,
                "boot_id": self.boot_id}

    @classmethod
    def from_json(cls, data: dict) -> "DaemonRecord":
        return cls(name=str(data["name"]), run_dir=str(data["run_dir"]), pid=data.get("pid"),
                   start_ticks=data.get("start_ticks"), boot_id=data.get("boot_id"))


@dataclass
class ClusterRecord:
    id: str
    name: str
    kind: str
    master_url: str
    state: str
    created_at: datetime
    updated_at: datetime
    ui_url: str | None = None
    host: str | None = None  # set for launched clusters: only servers on that host see them
    spec: dict | None = None
    conf: dict[str, str] = field(default_factory=dict)
    reason: str | None = None
    failure: str | None = None  # the reason it is being failed, while its daemons are stopped
    max_concurrent_jobs: int | None = None
    daemons: list[DaemonRecord] = field(default_factory=list)
    owner: Owner | None = None  # launched clusters: the server watching its daemons


def _values(record: ClusterRecord) -> dict:
    return {
        "id": record.id, "name": record.name, "kind": record.kind, "master_url": record.master_url,
        "ui_url": record.ui_url, "host": record.host, "spec": record.spec, "conf": record.conf,
        "state": record.state, "reason": record.reason, "failure": record.failure,
        "max_concurrent_jobs": record.max_concurrent_jobs,
        "daemons": [daemon.to_json() for daemon in record.daemons], "created_at": record.created_at,
        "updated_at": record.updated_at, **Owner.columns(record.owner),
    }


def _record(row) -> ClusterRecord:
    m = row._mapping
    return ClusterRecord(
        id=m["id"], name=m["name"], kind=m["kind"], master_url=m["master_url"], state=m["state"],
        created_at=m["created_at"], updated_at=m["updated_at"], ui_url=m["ui_url"], host=m["host"],
        spec=m["spec"], conf=dict(m["conf"] or {}), reason=m["reason"], failure=m["failure"],
        max_concurrent_jobs=m["max_concurrent_jobs"],
        daemons=[DaemonRecord.from_json(daemon) for daemon in m["daemons"] or ()],
        owner=Owner.from_columns(m),
    )


class ClusterStore:
    def __init__(self, job_store: JobStore, host: str):
        self.job_store = job_store
        self.engine = job_store.engine
        self.tenant = job_store.tenant
        self.host = host
        self._executor = job_store.executor

    @contextmanager
    def _write(self):
        # As the job store writes: a write transaction (IMMEDIATE on SQLite) from its first statement.
        with self.engine.connect().execution_options(write=True) as connection:
            with connection.begin():
                yield connection

    def _mine(self):
        """This tenant's clusters that this host can use: external ones, and those launched here."""
        return (clusters.c.tenant == self.tenant) & or_(clusters.c.host.is_(None), clusters.c.host == self.host)

    @in_store_thread
    def add(self, record: ClusterRecord) -> None:
        with self._write() as db:
            db.execute(insert(clusters).values(**_values(record), tenant=self.tenant))

    @in_store_thread
    def all(self) -> list[ClusterRecord]:
        with self.job_store.read_connection() as db:
            rows = db.execute(select(clusters).where(self._mine()).order_by(clusters.c.created_at, clusters.c.id))
            return [_record(row) for row in rows.all()]

    @in_store_thread
    def count(self) -> int:
        with self.job_store.read_connection() as db:
            return int(db.scalar(select(func.count()).select_from(clusters).where(self._mine())) or 0)

    @in_store_thread
    def update(self, cluster_id: str, *, now: datetime, from_states: Iterable[str] | None = None, **values) -> bool:
        """Set columns of a cluster (`daemons` as DaemonRecords), if it is in one of
        `from_states` when given; False if it is not (or is gone)."""
        if "daemons" in values:
            values["daemons"] = [daemon.to_json() for daemon in values["daemons"]]
        condition = (clusters.c.id == cluster_id) & (clusters.c.tenant == self.tenant)
        if from_states is not None:
            condition &= clusters.c.state.in_(list(from_states))
        with self._write() as db:
            return db.execute(update(clusters).where(condition).values(**values, updated_at=now)).rowcount == 1

    @in_store_thread
    def adopt(self, cluster_id: str, previous: Owner | None, owner: Owner, *, now: datetime) -> ClusterRecord | None:
        """Become the owner of a launched cluster whose owner is gone (`previous`, as last
        read); one server wins. The cluster as it is now, or None if another server won."""
        condition = (clusters.c.id == cluster_id) & (clusters.c.tenant == self.tenant)
        condition &= (clusters.c.owner_instance.is_(None) if previous is None
                      else clusters.c.owner_instance == previous.instance)
        with self._write() as db:
            if db.execute(update(clusters).where(condition)
                          .values(**Owner.columns(owner), updated_at=now)).rowcount != 1:
                return None
            return _record(db.execute(select(clusters).where(clusters.c.id == cluster_id)).one())

    @in_store_thread
    def delete(self, cluster_id: str) -> bool:
        with self._write() as db:
            return db.execute(delete(clusters).where(clusters.c.id == cluster_id,
                                                     clusters.c.tenant == self.tenant)).rowcount == 1
