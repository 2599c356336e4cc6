"""Plain records the store hands out: no ORM identity, no lazy loading, safe across threads."""

from dataclasses import dataclass, field
from datetime import datetime


@dataclass(frozen=True)
class Owner:
    """The Jupyter server that watches a run: which machine and boot, which server process.

    A run is re-attached, settled or killed only by its owner, or by a server on the same
    host that can prove the owner is gone (another boot, or its process no longer exists).
    """

    host: str
    boot_id: str
    instance: str  # a fresh id per server start
    pid: int
    start_ticks: int

    @staticmethod
    def columns(owner: "Owner | None") -> dict:
        """The owner_* columns (of runs and clusters) that record `owner`."""
        return {
            "owner_host": owner.host if owner else None,
            "owner_boot_id": owner.boot_id if owner else None,
            "owner_instance": owner.instance if owner else None,
            "owner_pid": owner.pid if owner else None,
            "owner_start_ticks": owner.start_ticks if owner else None,
        }

    @classmethod
    def from_columns(cls, m) -> "Owner | None":
        if m["owner_instance"] is None:
            return None
        return cls(m["owner_host"], m["owner_boot_id"], m["owner_instance"], m["owner_pid"], m["owner_start_ticks"])


@dataclass
class RunRecord:
    job_id: str
    attempt: int
    cluster_id: str
    state: str
    run_dir: str
    queued_at: datetime
    backend: str = "spark-submit"
    started_at: datetime | None = None
    finished_at: datetime | None = None
    exit_code: int | None = None
    error: str | None = None
    spark_app_id: str | None = None
    spark_ui_url: str | None = None
    # The supervisor: pid + start ticks + boot id prove it is the same process later.
    pid: int | None = None
    pid_start_ticks: int | None = None
    pid_boot_id: str | None = None
    owner: Owner | None = None
    owner_seen_at: datetime | None = None
    kill_requested: bool = False
    progress: dict | None = None
    artifacts: list[dict] | None = None  # [{"name", "uri", "size"}] once archived
    artifacts_error: str | None = None
    archive_pending: bool = False  # ended; its files are still to be archived
    folder_state: str | None = None  # None: present; "removed" (archived, then removed); "kept"


@dataclass
class JobRecord:
    id: str
    name: str
    cluster_id: str
    state: str
    file: str | None
    args: list[str]
    conf: dict[str, str]
    env: dict[str, str]
    attempt: int
    created_at: datetime
    updated_at: datetime
    log_level: str | None = None
    mode: str | None = None  # asked for: "batch", "connect", "auto"; None: the cluster's default
    notebook: dict | None = None  # notebook jobs: {"path", "parameters", "kernel_name"}
    code: str | None = None  # loaded only for one job's details, never for lists
    inputs: list[dict] = field(default_factory=list)  # [{"uri", "as"}]; loaded with `code`
    runs: list[RunRecord] = field(default_factory=list)  # idem
