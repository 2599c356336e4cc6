"""PostgreSQL from POSTGRES_*: a real connection (psycopg 3, async) and `SELECT 1`."""

import math

import psycopg

from .check import Finding, HealthCheck, Unhealthy, describe_error
from .settings import PostgresSettings

# libpq counts connect_timeout in whole seconds and treats anything below 2 as 2; it is
# longer than the check's own timeout, which ends a hung connect first.
MIN_CONNECT_TIMEOUT = 2


class PostgresCheck(HealthCheck):
    kind = "database"

    def __init__(self, settings: PostgresSettings | None, name: str = "postgresql"):
        super().__init__(name, secrets=settings.secrets() if settings else ())
        self.settings = settings

    def disabled_reason(self) -> str | None:
        return None if self.settings else "not configured: POSTGRES_HOST is not set"

    def target(self) -> dict:
        settings = self.settings
        return {"host": settings.host, "port": settings.port, "database": settings.database, "user": settings.user}

    async def probe(self, timeout: float) -> Finding:
        settings = self.settings
        try:
            connection = await psycopg.AsyncConnection.connect(
                host=settings.host, port=settings.port, user=settings.user, password=settings.password,
                dbname=settings.database, connect_timeout=max(MIN_CONNECT_TIMEOUT, math.ceil(timeout) + 1),
                application_name="dataharbour-health-check", autocommit=True,
            )
        except psycopg.Error as error:
            raise Unhealthy(describe_error(error)) from None
        async with connection:
            cursor = await connection.execute("SELECT 1")
            if await cursor.fetchone() != (1,):
                raise Unhealthy("SELECT 1 did not answer 1")
            version = connection.info.parameter_status("server_version")
        return Finding(version=version)
