"""Where the platform services are, from the seed's environment variables.

An unset address means the service is not part of this platform: its check reports it
`disabled` without a network call.
"""

from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

TRUE_WORDS = frozenset({"1", "true", "yes", "on"})


def _flag(value: str | None) -> bool | None:
    if value is None or not value.strip():
        return None
    return value.strip().lower() in TRUE_WORDS


@dataclass(frozen=True)
class MinioSettings:
    """MINIO_ENDPOINT (`host:port`, or with an http(s):// scheme), MINIO_ACCESS_KEY,
    MINIO_SECRET_KEY, MINIO_BUCKET_NAME, MINIO_SECURE (overrides the scheme)."""

    endpoint: str  # host:port, as the minio SDK wants it
    secure: bool
    access_key: str | None = None
    secret_key: str | None = field(default=None, repr=False)
    bucket: str | None = None

    @classmethod
    def from_environment(cls, env: Mapping[str, str]) -> "MinioSettings | None":
        raw = (env.get("MINIO_ENDPOINT") or "").strip()
        if not raw:
            return None
        secure = False
        if "://" in raw:
            parts = urlsplit(raw)
            secure = parts.scheme.lower() == "https"
            raw = parts.netloc.rsplit("@", 1)[-1]  # credentials belong in the keys, never the address
        explicit = _flag(env.get("MINIO_SECURE"))
        return cls(
            endpoint=raw.rstrip("/"),
            secure=secure if explicit is None else explicit,
            access_key=env.get("MINIO_ACCESS_KEY") or None,
            secret_key=env.get("MINIO_SECRET_KEY") or None,
            bucket=env.get("MINIO_BUCKET_NAME") or None,
        )

    def secrets(self) -> list[str]:
        return [self.secret_key] if self.secret_key else []


@dataclass(frozen=True)
class AirflowSettings:
    """AIRFLOW_BASE_URL, with AIRFLOW_USERNAME / AIRFLOW_PASSWORD for basic auth when set."""

    base_url: str
    username: str | None = None
    password: str | None = field(default=None, repr=False)

    @classmethod
    def from_environment(cls, env: Mapping[str, str]) -> "AirflowSettings | None":
        base_url = (env.get("AIRFLOW_BASE_URL") or "").strip()
        if not base_url:
            return None
        if "://" not in base_url:
            base_url = "http://" + base_url
        return cls(base_url.rstrip("/"), env.get("AIRFLOW_USERNAME") or None, env.get("AIRFLOW_PASSWORD") or None)

    def secrets(self) -> list[str]:
        return [self.password] if self.password else []


@dataclass(frozen=True)
class PostgresSettings:
    """POSTGRES_HOST, POSTGRES_PORT (5432), POSTGRES_USER (postgres), POSTGRES_PASSWORD,
    POSTGRES_DB (dataharbour, as the store's default)."""

    host: str
    port: str  # passed on as written: libpq says clearly what is wrong with a bad one
    user: str
    database: str
    password: str | None = field(default=None, repr=False)

    @classmethod
    def from_environment(cls, env: Mapping[str, str]) -> "PostgresSettings | None":
        host = (env.get("POSTGRES_HOST") or "").strip()
        if not host:
            return None
        return cls(host, (env.get("POSTGRES_PORT") or "5432").strip(), env.get("POSTGRES_USER") or "postgres",
                   env.get("POSTGRES_DB") or "dataharbour", env.get("POSTGRES_PASSWORD") or None)

    def secrets(self) -> list[str]:
        return [self.password] if self.password else []


@dataclass(frozen=True)
class PlatformSettings:
    minio: MinioSettings | None
    airflow: AirflowSettings | None
    postgres: PostgresSettings | None

    @classmethod
    def from_environment(cls, env: Mapping[str, str]) -> "PlatformSettings":
        return cls(MinioSettings.from_environment(env), AirflowSettings.from_environment(env),
                   PostgresSettings.from_environment(env))
