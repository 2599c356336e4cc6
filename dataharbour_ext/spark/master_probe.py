"""What state an external master is in, as far as this server can tell.

A spark:// master is asked: through its web UI's JSON status when its UI address is known
(ALIVE is `running`), else by whether one of its masters accepts a connection. k8s:// and
yarn masters cannot be asked here (`unknown`, saying so); local[N] is always there.
"""

import asyncio
import os
from collections.abc import Awaitable, Callable

from ..secrets import redact_text
from .master_url import spark_master_addresses
from .standalone import MasterStatus

# Reads a master UI's status (None when it cannot): ClusterViews.status_at, which keeps it.
StatusAt = Callable[[str], Awaitable[MasterStatus | None]]


async def probe_master(master_url: str, ui_url: str | None, status_at: StatusAt,
                       timeout: float) -> tuple[str, str | None]:
    """(state, reason): `running` with no reason, or `unknown` with why."""
    if master_url.startswith("local"):
        return "running", None
    if not master_url.startswith("spark://"):
        return "unknown", f"not probed: this server cannot ask a {master_url.split(':', 1)[0]} master its state"
    if ui_url:
        status = await status_at(ui_url)
        if status is not None and status.status == "ALIVE":
            return "running", None
        where = redact_text(ui_url)  # a reason is shown and stored: no password of the URL in it
        return "unknown", (f"the master UI at {where} says {status.status}" if status is not None
                           else f"the master UI at {where} did not answer with a master's status")
    problems = []
    for address in spark_master_addresses(master_url):
        where = f"{address.host}:{address.port}"
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(address.host, address.port), timeout)
        except TimeoutError:  # before OSError: it is one
            problems.append(f"{where}: no answer within {timeout:g} s")
            continue
        except OSError as error:
            problems.append(f"{where}: {os.strerror(error.errno) if error.errno else error}")
            continue
        writer.close()
        return "running", None
    return "unknown", "no master answered: " + "; ".join(problems)
