"""Schema migrations with Alembic, run when the store opens.

A store made by the first release (tables made by `create_all`, no `alembic_version`) is
stamped as revision 0001 and upgraded in place, keeping its jobs.
"""

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect
from sqlalchemy.engine import Engine

MIGRATIONS = Path(__file__).with_name("migrations")
FIRST_RELEASE = "0001"


def alembic_config(connection) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def upgrade_to_latest(engine: Engine) -> None:
    with engine.connect().execution_options(write=True) as connection:
        config = alembic_config(connection)
        tables = set(inspect(connection).get_table_names())
        if "jobs" in tables and "alembic_version" not in tables:
            command.stamp(config, FIRST_RELEASE)
        command.upgrade(config, "head")
        connection.commit()
