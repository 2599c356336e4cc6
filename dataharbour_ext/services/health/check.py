"""The frame every platform service's health check runs in: a timeout, the time it took,
and failures turned into an `unhealthy` status whose reason carries no secret."""

import asyncio
import re
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Executor, Future
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TypeVar

from ...models.services import DetailValue, ServiceKind, ServiceStatus
from ...secrets import REDACTED, redact_text

MAX_REASON_LENGTH = 500
# A shorter configured secret cannot be told apart from ordinary text: masking each of its
# occurrences would garble messages and show where its characters occur. Client libraries
# do not echo passwords; a password inside a URL is masked by its position whatever its length.
MIN_MASKED_SECRET_LENGTH = 6

T = TypeVar("T")


@dataclass
class Finding:
    """What a check learned about a usable service."""

    version: str | None = None
    details: dict[str, DetailValue] = field(default_factory=dict)


class Unhealthy(Exception):
    """The service answered but is not usable; what the check learned comes along."""

    def __init__(self, reason: str, *, version: str | None = None, details: dict[str, DetailValue] | None = None):
        super().__init__(reason)
        self.reason = reason
        self.version = version
        self.details = details or {}


class HealthCheck:
    """One platform service's check. Subclasses implement `probe`; blocking SDK calls in it
    run on the checks' own threads (`in_thread`) so the event loop never waits on a service.

    `secrets` are the values this check was configured with that must never be shown
    (a password, a secret key): they are masked wherever they turn up in a status.

    A probe whose client library gives up waiting raises `TimeoutError`: the status then
    reads the same as when the check's own timeout ends it."""

    kind: ServiceKind

    def __init__(self, name: str, *, secrets: Iterable[str] = ()):
        self.name = name
        self._secrets = sorted({s for s in secrets if s and len(s) >= MIN_MASKED_SECRET_LENGTH}, key=len,
                               reverse=True)
        # The checks' own small pool (ServiceHealth gives it): never the loop's default
        # executor, which Jupyter's own file work shares.
        self.threads: Executor | None = None
        self._thread: Future | None = None  # the work of this check's latest `in_thread`
        self._thread_started = 0.0

    def start(self) -> None:
        """Begin, in the background, what the check reads only once (outside any timeout).
        Called on the event loop before the check's first round; may be called again."""

    def disabled_reason(self) -> str | None:
        """Why this service is not checked here (it is not configured), or None."""
        return None

    def target(self) -> dict[str, DetailValue]:
        """What is checked (an address, a bucket): the first details of every status."""
        return {}

    def no_logs_reason(self) -> str:
        """Why this server has no logs of the service, unless a log source is registered for it."""
        return "it runs outside this server"

    async def probe(self, timeout: float) -> Finding:
        raise NotImplementedError

    async def aclose(self) -> None:
        """Release what the check keeps between rounds (an HTTP client)."""

    async def in_thread(self, function: Callable[..., T], *args) -> T:
        """`function(*args)` on the checks' threads. A timeout cannot stop a thread: work that
        outlives its check's timeout keeps its thread until the call returns, and until then
        this check is not probed again (it reports why), so a hung service holds one thread,
        not one more each round."""
        if self.threads is None:
            raise RuntimeError(f"the health check of {self.name} has no threads to run on")
        previous = self._thread
        if previous is not None and not previous.done():
            running = time.monotonic() - self._thread_started
            raise Unhealthy(f"the previous check has not finished after {running:.0f} s")
        self._thread_started = time.monotonic()
        # The thread's own future, not an asyncio wrapper: a cancelled wrapper reads as done
        # while the thread still runs.
        self._thread = self.threads.submit(function, *args)
        return await asyncio.wrap_future(self._thread)

    async def run(self, timeout: float) -> ServiceStatus:
        """The service's status, within `timeout` seconds whatever the service does."""
        disabled = self.disabled_reason()
        if disabled is not None:
            return self._status("disabled", reason=disabled)
        started = time.monotonic()
        try:
            finding = await asyncio.wait_for(self.probe(timeout), timeout)
        except (asyncio.TimeoutError, TimeoutError):  # one and the same from Python 3.11
            return self._status("unhealthy", started, reason=f"no answer within {timeout:g} s")
        except Unhealthy as problem:
            return self._status("unhealthy", started, reason=problem.reason, version=problem.version,
                                details=problem.details)
        except Exception as error:  # whatever the client library raised: its text is the reason
            return self._status("unhealthy", started, reason=describe_error(error))
        return self._status("healthy", started, version=finding.version, details=finding.details)

    def _status(self, status: str, started: float | None = None, *, reason: str | None = None,
                version: str | None = None, details: dict[str, DetailValue] | None = None) -> ServiceStatus:
        latency = None if started is None else round((time.monotonic() - started) * 1000, 1)
        if status != "disabled":
            details = {**self.target(), **(details or {})}
        return ServiceStatus(
            name=self.name, kind=self.kind, status=status, latency_ms=latency,
            version=self._clean(version), reason=self._clean(reason, MAX_REASON_LENGTH),
            details={key: self._clean(value) if isinstance(value, str) else value
                     for key, value in (details or {}).items()},
            checked_at=datetime.now(timezone.utc),
        )

    def _clean(self, text: str | None, limit: int | None = None) -> str | None:
        """`text` with URL passwords and this check's own secrets masked."""
        if text is None:
            return None
        for secret in self._secrets:
            text = text.replace(secret, REDACTED)
        text = redact_text(text)
        if limit is not None and len(text) > limit:
            text = text[: limit - 1] + "…"
        return text


# urllib3 names the connection object it failed on: "<...HTTPConnection object at 0x7f...>: "
_OBJECT_REPR = re.compile(r"<[\w.]+ object at 0x[0-9a-f]+>:?\s*")


def describe_error(error: BaseException) -> str:
    """An exception as a reason: its own words, else its type's name."""
    text = _OBJECT_REPR.sub("", " ".join(str(error).split()))
    return text or type(error).__name__
