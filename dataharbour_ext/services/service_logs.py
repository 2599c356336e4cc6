"""The logs of platform services, by service name: the Jupyter server's own records, and the
log files of services this server runs (registered by whoever starts them).

A log source is anything with a blocking `tail(count) -> list[str]`; it is always called in
a thread. Today only `jupyter` is registered (the server's own records). `register` is the
interface through which the clusters capability will show the logs of the Spark daemons it
launches (issue 9), under the cluster's service name, for example:

    name = cluster_service_name(cluster.id)
    service_logs.register(name, LogFiles(lambda: [master_log, *worker_logs]))
    ...
    service_logs.unregister(name)  # when the cluster is deleted
"""

import asyncio
import os
import re
from collections.abc import Callable, Sequence
from typing import Protocol

from ..errors import NotFound
from ..secrets import REDACTED, redact_text
from ..store.log_files import read_tail
from .service_health import ServiceHealth


class LogSource(Protocol):
    def tail(self, count: int) -> list[str]:
        """The last `count` lines, oldest first. May block (file reads): called in a thread."""
        ...


class LogFiles:
    """Log files read as one log, oldest file first: the last lines of the newest file, then
    of the one before it if more are wanted (a rotated log, or daemons listed in the order
    to read them). Each file is read backwards from its end, never whole."""

    def __init__(self, paths: Callable[[], Sequence[str | os.PathLike]] | Sequence[str | os.PathLike]):
        self._paths = paths if callable(paths) else (lambda: list(paths))

    def tail(self, count: int) -> list[str]:
        lines: list[str] = []
        for path in reversed(list(self._paths())):
            if not os.path.isfile(path):
                continue
            lines[:0] = read_tail(os.fspath(path), count - len(lines), final=True).lines
            if len(lines) >= count:
                break
        return lines[-count:]


class ServiceLogs:
    """Log sources by service name. For a platform service without one, its health check
    says why this server has no logs of it (it runs elsewhere)."""

    def __init__(self, health: ServiceHealth):
        self._sources: dict[str, LogSource] = {}
        self.health = health

    def register(self, name: str, source: LogSource) -> None:
        self._sources[name] = source

    def unregister(self, name: str) -> None:
        self._sources.pop(name, None)

    def has_logs(self, name: str) -> bool:
        return name in self._sources

    async def tail(self, name: str, count: int) -> list[str]:
        source = self._sources.get(name)
        if source is None:
            check = self.health.check_named(name)
            if check is not None:
                raise NotFound(f"this server keeps no logs of {name}: {check.no_logs_reason()}")
            known = ", ".join(dict.fromkeys([check.name for check in self.health.checks()] + sorted(self._sources)))
            raise NotFound(f"no service named {name!r} (known: {known})")
        return await asyncio.to_thread(_redacted_tail, source, count)


# Jupyter logs its own address with its token at start-up ("...:8888/lab?token=..."); a
# reader of the logs may be a user the authorizer lets read, not use the server.
_URL_TOKEN = re.compile(r"(?P<head>[?&](?:token|_xsrf)=)[^&\s#'\"]+")


def _redacted_tail(source: LogSource, count: int) -> list[str]:
    # A log line may quote a URL with its password (a connection string, a proxied address).
    return [_URL_TOKEN.sub(lambda m: m["head"] + REDACTED, redact_text(line)) for line in source.tail(count)]
