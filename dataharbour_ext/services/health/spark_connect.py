"""The Spark Connect servers (services/connect_servers.py), one check each, named
`connect:<cluster_id>`.

Healthy when the server is ready and its port accepts a TCP connection (a gRPC call would
need the token and a session: the port is enough to tell a live server from a dead one).
Starting, stopping or stopped (after an idle time, or never used since) it is `disabled`
with its reason; failed it is `unhealthy` with the reason from its log. An external server
(`dataharbour.connect.url`) is healthy when its address answers.

`ConnectServerChecks` is what ServiceHealth's `extra_checks` calls each round: it keeps one
check object per cluster while the cluster's server is known, so each keeps its state.
"""

import asyncio
import contextlib
from collections.abc import Callable
from typing import TYPE_CHECKING

from ...spark import connect_server
from .check import Finding, HealthCheck, Unhealthy

if TYPE_CHECKING:  # imported for types only: connect_servers imports the service logs, which import health
    from ..connect_servers import ConnectServers, ConnectStatus

SERVICE_PREFIX = "connect:"


class ConnectServerCheck(HealthCheck):
    kind = "spark_connect"

    def __init__(self, cluster_id: str, status: "Callable[[], ConnectStatus]"):
        super().__init__(f"{SERVICE_PREFIX}{cluster_id}")
        self.cluster_id = cluster_id
        self.status = status  # the server's status now, as the service keeps it

    def disabled_reason(self) -> str | None:
        status = self.status()
        if status.state in ("ready", "failed", "external"):
            return None
        what = f"the Spark Connect server is {status.state}"
        return f"{what}: {status.reason}" if status.reason else what

    def no_logs_reason(self) -> str:
        if self.status().state == "external":
            return "its Spark Connect server runs outside this server"
        return "its Spark Connect server has not been started here"

    def target(self) -> dict:
        status = self.status()
        return {"cluster_id": self.cluster_id, "address": status.address}

    async def probe(self, timeout: float) -> Finding:
        status = self.status()
        if status.state == "failed":
            raise Unhealthy(f"the Spark Connect server failed: {status.reason}" if status.reason
                            else "the Spark Connect server failed")
        if status.state == "external":
            host, port, _ = connect_server.parse_connect_url(status.address)
        else:
            host, port = connect_server.HOST, status.port
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
        except OSError as error:
            raise Unhealthy(f"its port {port} does not answer: {error.strerror or error}") from None
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        details = {"state": status.state, "port": port}
        if status.pid is not None:
            details.update(pid=status.pid, in_use=status.in_use,
                           started_at=status.started_at.isoformat() if status.started_at else None,
                           last_used_at=status.last_used_at.isoformat() if status.last_used_at else None)
        return Finding(details=details)


class ConnectServerChecks:
    """`checks()`: one ConnectServerCheck per Connect server the service knows, the same
    object for a cluster from round to round (ServiceHealth's `extra_checks`)."""

    def __init__(self, servers: "ConnectServers"):
        self.servers = servers
        self._checks: dict[str, ConnectServerCheck] = {}

    def __call__(self) -> list[HealthCheck]:
        known = [status.cluster_id for status in self.servers.all_statuses()]
        self._checks = {cluster_id: self._checks.get(cluster_id) or ConnectServerCheck(
            cluster_id, lambda cluster_id=cluster_id: self.servers.status(cluster_id)) for cluster_id in known}
        return list(self._checks.values())
