"""SQLAlchemy tables: a job is a record, each execution of it is a run."""

from datetime import datetime

from sqlalchemy import JSON, Boolean, DateTime, Float, ForeignKey, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


class Base(DeclarativeBase):
    pass


class JobRecord(Base):
    __tablename__ = "jobs"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(1024), index=True)
    cluster_id: Mapped[str] = mapped_column(String(256), index=True)
    # Mirrors the latest run's state so that listing and filtering need no join.
    state: Mapped[str] = mapped_column(String(16), index=True)
    code: Mapped[str] = mapped_column(Text)
    file: Mapped[str | None] = mapped_column(String(4096), nullable=True)
    args: Mapped[list] = mapped_column(JSON, default=list)
    conf: Mapped[dict] = mapped_column(JSON, default=dict)
    env: Mapped[dict] = mapped_column(JSON, default=dict)
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime, index=True)
    updated_at: Mapped[datetime] = mapped_column(DateTime, index=True)

    runs: Mapped[list["RunRecord"]] = relationship(
        back_populates="job", order_by="RunRecord.attempt", lazy="selectin", viewonly=True, cascade=""
    )


class RunRecord(Base):
    __tablename__ = "runs"

    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id"), primary_key=True)
    attempt: Mapped[int] = mapped_column(Integer, primary_key=True)
    cluster_id: Mapped[str] = mapped_column(String(256), index=True)
    state: Mapped[str] = mapped_column(String(16), index=True)
    run_dir: Mapped[str] = mapped_column(String(4096))
    queued_at: Mapped[datetime] = mapped_column(DateTime, index=True)
    started_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    exit_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    spark_app_id: Mapped[str | None] = mapped_column(String(256), nullable=True)
    spark_ui_url: Mapped[str | None] = mapped_column(String(1024), nullable=True)
    # The supervisor's pid and start time: together they identify it across server restarts
    # (a pid alone may have been reused by an unrelated process).
    pid: Mapped[int | None] = mapped_column(Integer, nullable=True)
    pid_started: Mapped[float | None] = mapped_column(Float, nullable=True)
    kill_requested: Mapped[bool] = mapped_column(Boolean, default=False)

    job: Mapped[JobRecord] = relationship(back_populates="runs", viewonly=True)
