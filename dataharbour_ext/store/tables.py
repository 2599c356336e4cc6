"""The SQL tables (SQLAlchemy Core). Changes to them go through an Alembic migration."""

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    false,
)

metadata = MetaData()

jobs = Table(
    "jobs",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("name", String(1024), nullable=False, index=True),
    Column("cluster_id", String(256), nullable=False, index=True),
    # Mirrors the latest run's state so that listing and filtering need no join.
    Column("state", String(16), nullable=False, index=True),
    Column("code", Text, nullable=False),
    Column("file", String(4096)),
    Column("args", JSON, nullable=False),
    Column("conf", JSON, nullable=False),
    Column("env", JSON, nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("created_at", DateTime, nullable=False, index=True),
    Column("updated_at", DateTime, nullable=False, index=True),
    Column("log_level", String(16)),
    # The run mode the job asked for ("batch", "connect", "auto"); NULL: its cluster's default.
    # Each run records the backend it got (runs.backend).
    Column("mode", String(16)),
    # Notebook jobs: {"path": the notebook's path at submit, "parameters": {...}, "kernel_name": ...};
    # NULL for program jobs. The notebook itself (without outputs) is the job's `code`.
    Column("notebook", JSON),
    # Objects downloaded into each run's input folder before it starts: [{"uri": "s3://b/k", "as": "path"}];
    # NULL: none.
    Column("inputs", JSON),
    # Whose job: servers sharing one store see, run and change only their own tenant's jobs
    # (a server can only run code as its own user).
    Column("tenant", String(256), nullable=False),
    # Seconds from the latest run's start to its end, set when that run succeeds or fails (NULL
    # while the job is queued or active, for a run that never started, and for killed and lost
    # runs, whose end is not the program's): the dashboard's mean and p95 read an index of it
    # instead of joining every job to its run.
    Column("duration", Float),
)
# A page of one tenant's jobs in the order asked for is an index range scan, whatever the
# size of the table (sort ties are broken by id in the same direction).
Index("ix_jobs_tenant_created", jobs.c.tenant, jobs.c.created_at, jobs.c.id)
Index("ix_jobs_tenant_updated", jobs.c.tenant, jobs.c.updated_at, jobs.c.id)
Index("ix_jobs_tenant_state_created", jobs.c.tenant, jobs.c.state, jobs.c.created_at, jobs.c.id)
# The dashboard: p95 is a short walk from the top of this index (mean: one pass over it).
Index("ix_jobs_tenant_duration", jobs.c.tenant, jobs.c.duration)

runs = Table(
    "runs",
    metadata,
    Column("job_id", String(32), ForeignKey("jobs.id"), primary_key=True),
    Column("attempt", Integer, primary_key=True),
    Column("cluster_id", String(256), nullable=False, index=True),
    Column("state", String(16), nullable=False, index=True),
    Column("run_dir", String(4096), nullable=False),
    Column("queued_at", DateTime, nullable=False, index=True),
    Column("started_at", DateTime),
    Column("finished_at", DateTime),
    Column("exit_code", Integer),
    Column("error", Text),
    Column("spark_app_id", String(256)),
    Column("spark_ui_url", String(1024)),
    Column("pid", Integer),
    Column("pid_started", Float),  # legacy (create_time); identity is pid_start_ticks + pid_boot_id
    Column("kill_requested", Boolean, nullable=False),
    Column("backend", String(32)),
    Column("pid_start_ticks", BigInteger),
    Column("pid_boot_id", String(64)),
    Column("owner_host", String(256)),
    Column("owner_boot_id", String(64)),
    Column("owner_instance", String(64)),
    Column("owner_pid", Integer),
    Column("owner_start_ticks", BigInteger),
    Column("tenant", String(256), nullable=False),
    # The owner's last sign of life: a run whose owner on another host stopped reporting
    # is `lost` (nothing on this host can prove more, or stop it).
    Column("owner_seen_at", DateTime),
    # Spark jobs, stages and tasks done when the run ended (live progress is kept in memory).
    Column("progress", JSON),
    # The run's files archived in the object storage after it ended: [{"name", "uri", "size"}] (NULL until
    # then, or without storage), and why archiving failed.
    Column("artifacts", JSON),
    Column("artifacts_error", Text),
    # Ended, its files not archived yet: the next server on its host archives them if its own
    # stopped first.
    Column("archive_pending", Boolean, nullable=False, server_default=false()),
    # NULL: the run folder is there; "removed" by run_folder_retention_days once archived;
    # "kept": past that age but not archived, so it holds the only copy of the run's log.
    Column("folder_state", String(16)),
)
Index("ix_runs_state_queued", runs.c.state, runs.c.queued_at)
Index("ix_runs_tenant_state", runs.c.tenant, runs.c.state)
# The dashboard's trends: runs that ended in a time window, counted per state off the index.
Index("ix_runs_tenant_state_finished", runs.c.tenant, runs.c.state, runs.c.finished_at)

# One row per tenant and cluster: admission locks it (SELECT ... FOR UPDATE) so that two servers
# sharing the store cannot both take a cluster's last free slot.
admission = Table(
    "admission",
    metadata,
    Column("cluster_id", String(256), primary_key=True),
)

# One row per system metrics sample. Servers sharing a store keep apart by host: a server's
# history is of the machine it runs on. Time is epoch milliseconds, so that downsampling
# buckets are integer division on SQLite and PostgreSQL alike.
metric_samples = Table(
    "metric_samples",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("host", String(256), nullable=False),
    Column("taken_at_ms", BigInteger, nullable=False),
    Column("cpu_percent", Float, nullable=False),
    Column("cpu_count", Integer, nullable=False),
    Column("load_1", Float, nullable=False),
    Column("load_5", Float, nullable=False),
    Column("load_15", Float, nullable=False),
    Column("memory_total", BigInteger, nullable=False),
    Column("memory_used", BigInteger, nullable=False),
    Column("memory_available", BigInteger, nullable=False),
    Column("memory_percent", Float, nullable=False),
    Column("swap_total", BigInteger, nullable=False),
    Column("swap_used", BigInteger, nullable=False),
    Column("swap_percent", Float, nullable=False),
    Column("disk_total", BigInteger, nullable=False),
    Column("disk_used", BigInteger, nullable=False),
    Column("disk_percent", Float, nullable=False),
    # Rates come from the change since the previous sample: the first one has none.
    Column("disk_read_bytes_per_sec", Float),
    Column("disk_write_bytes_per_sec", Float),
    Column("network_rx_bytes_per_sec", Float),
    Column("network_tx_bytes_per_sec", Float),
    Column("processes", Integer, nullable=False),
    Column("kernels", Integer, nullable=False),
    Column("sessions", Integer, nullable=False),
    Column("jobs_running", Integer, nullable=False),
    Column("jobs_queued", Integer, nullable=False),
)
# Every query (history, prune, count) is of one host's samples in a time range.
Index("ix_metric_samples_host_taken", metric_samples.c.host, metric_samples.c.taken_at_ms)

# Clusters registered or launched beside the default one (which comes from the server's
# config). A launched (standalone) cluster runs on one host: `host` (machine id and pid
# namespace) keeps it to the servers there, which alone can reach and prove its processes;
# `daemons` names each daemon's run folder and supervisor identity, for re-attaching after a
# server restart. External clusters have no host: every server of the tenant can use them.
clusters = Table(
    "clusters",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("tenant", String(256), nullable=False, index=True),
    Column("host", String(256)),
    Column("name", String(1024), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("master_url", String(4096), nullable=False),
    Column("ui_url", String(1024)),
    Column("spec", JSON),
    Column("conf", JSON, nullable=False),
    Column("state", String(16), nullable=False),
    Column("reason", Text),
    # Why a launched cluster is being failed, written before its daemons are stopped: a
    # server stopping meanwhile leaves it starting/running with this, and the next resumes.
    Column("failure", Text),
    Column("max_concurrent_jobs", Integer),
    Column("daemons", JSON, nullable=False),
    Column("created_at", DateTime, nullable=False),
    Column("updated_at", DateTime, nullable=False),
    # The server that watches a launched cluster's daemons (as for runs): only it acts on
    # them; another server on the host takes over once it can prove the owner gone.
    Column("owner_host", String(256)),
    Column("owner_boot_id", String(64)),
    Column("owner_instance", String(64)),
    Column("owner_pid", Integer),
    Column("owner_start_ticks", BigInteger),
)
