"""ActivationListener: holds a Spark Connect server's port while the server is not running,
and starts the server when a client connects (socket activation).

Clients given an endpoint once (kernels: SPARK_REMOTE in their environment) must find a
server there whenever they use it, though the server starts on first use and stops when
idle. So while it is stopped this listener owns its port. The first connection closes the
listening socket at once (the server's JVM binds the port next) and calls `activate`; the
connections that came are held open, unanswered, until the start is over, then closed: the
gRPC client sees its connection end and retries at once onto the server now listening,
rather than backing off (exponentially, for up to a minute) against a refused port.
"""

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger("dataharbour_ext.connect")


class ActivationListener:
    def __init__(self, host: str, port: int, name: str, activate: Callable[[], Awaitable[object]],
                 activated: Callable[[], None]):
        self.host = host
        self.port = port
        self.name = name
        self.activate = activate  # starts the server: returns once it is ready, raises if it cannot start
        self.activated = activated  # after an activation, ended either way: the owner may listen again
        self._listener: asyncio.Server | None = None
        self._held: set[asyncio.StreamWriter] = set()
        self._activation: asyncio.Task | None = None

    @property
    def listening(self) -> bool:
        return self._listener is not None

    async def listen(self) -> None:
        """Own the port until a client comes. OSError if another process has it."""
        if self._listener is not None or self._activation is not None:
            return
        self._listener = await asyncio.start_server(self._on_connection, self.host, self.port, reuse_address=True)

    def close(self) -> None:
        """Give the port up now (the server is about to bind it); connections held so far stay
        held until the activation under way ends."""
        if self._listener is not None:
            self._listener.close()
            self._listener = None

    async def stop(self) -> None:
        """At shutdown: the port, the activation and the held connections, all let go."""
        self.close()
        if self._activation is not None:
            self._activation.cancel()
            with contextlib.suppress(BaseException):
                await self._activation
        self._release_held()

    def _on_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._held.add(writer)
        if self._activation is None:
            self.close()
            self._activation = asyncio.create_task(self._activate(), name=f"dataharbour-activate-{self.name}")

    async def _activate(self) -> None:
        log.info("DataHarbour: a client connected to port %d: starting %s", self.port, self.name)
        try:
            await self.activate()
        except asyncio.CancelledError:
            raise
        except Exception as error:  # the server's own state and log say why; the clients' retries see it
            log.warning("DataHarbour: %s did not start for the client on port %d: %s", self.name, self.port,
                        getattr(error, "message", error))
        finally:
            self._activation = None
            self._release_held()
            self.activated()

    def _release_held(self) -> None:
        held, self._held = self._held, set()
        for writer in held:
            writer.close()
