"""WS {base_url}api/v1/ws/{client_id} (and the seed's {base_url}ws/{client_id}): live updates.

Authenticated and authorized like Jupyter's own websockets: `@ws_authenticated` on `get`,
the authorizer asked in `pre_get`, the Origin checked by `WebSocketMixin` (for cookie
logins). The protocol lives in services/live_stream.py; this handler only moves text.
"""

import asyncio
import re

from jupyter_core.utils import ensure_async
from jupyter_server.auth.decorator import ws_authenticated
from jupyter_server.base.handlers import JupyterHandler
from jupyter_server.base.websocket import WebSocketMixin
from tornado import web
from tornado.websocket import WebSocketClosedError, WebSocketHandler

from .clusters import AUTH_RESOURCE as CLUSTERS_RESOURCE
from .jobs import AUTH_RESOURCE as JOBS_RESOURCE
from .monitoring import AUTH_RESOURCE as MONITORING_RESOURCE

AUTH_RESOURCE = "dataharbour:events"
SESSION_ID = re.compile(r"^[0-9a-f]{16}$")
# Close codes: the client id was connected again elsewhere (do not reconnect), the server
# is stopping (reconnect later), something broke (reconnect).
REPLACED, GOING_AWAY, SERVER_ERROR = 4000, 1001, 1011


class LiveStreamHandler(WebSocketMixin, WebSocketHandler, JupyterHandler):
    auth_resource = AUTH_RESOURCE
    session = None
    writer: asyncio.Task | None = None

    def set_default_headers(self):
        """JupyterHandler's API headers make no sense on a websocket upgrade."""

    @property
    def stream(self):
        return self.settings["dataharbour"]["stream"]

    async def pre_get(self):
        user = self.current_user
        if not await ensure_async(self.authorizer.is_authorized(self, user, "read", AUTH_RESOURCE)):
            raise web.HTTPError(403)
        # Each topic shows what a GET shows (/jobs, /monitoring, /clusters): the same permission.
        self.can_read_jobs = await ensure_async(self.authorizer.is_authorized(self, user, "read", JOBS_RESOURCE))
        self.can_read_monitoring = await ensure_async(
            self.authorizer.is_authorized(self, user, "read", MONITORING_RESOURCE))
        self.can_read_clusters = await ensure_async(
            self.authorizer.is_authorized(self, user, "read", CLUSTERS_RESOURCE))
        if not self.stream.valid_client_id(self.client_id):
            raise web.HTTPError(400, "client_id: 1-128 letters, digits, '.', '_', '~' or '-', starting with a "
                                     "letter or digit")
        since = self.get_query_argument("since_seq", None)
        if since is not None and not (since.isascii() and since.isdigit() and len(since) <= 18):
            raise web.HTTPError(400, "since_seq: the seq of the last message received (an integer >= 0)")
        self.since_seq = int(since) if since is not None else None
        self.session_id = self.get_query_argument("session", None)
        if self.session_id is not None and not SESSION_ID.match(self.session_id):
            raise web.HTTPError(400, "session: the `session` of the welcome message (16 hex digits)")

    @ws_authenticated
    async def get(self, client_id: str):
        self.client_id = client_id
        await self.pre_get()
        await super().get(client_id=client_id)

    async def open(self, client_id: str):
        super().open()  # Jupyter's keep-alive pings
        # Updates are small and latency matters: no Nagle delay waiting for the client's ACK.
        self.set_nodelay(True)
        try:
            self.session, self.connection = await self.stream.connect(
                self.current_user.username, client_id, self.since_seq, session_id=self.session_id,
                can_read_jobs=self.can_read_jobs, can_read_monitoring=self.can_read_monitoring,
                can_read_clusters=self.can_read_clusters,
            )
        except Exception:
            self.log.exception("DataHarbour: opening the live stream of %s failed", client_id)
            self.close(SERVER_ERROR, "the stream could not be opened")
            return
        self.writer = asyncio.create_task(self._write_all(), name=f"dataharbour-ws-{client_id}")

    async def _write_all(self) -> None:
        code, reason = REPLACED, "this client id was connected again elsewhere"
        try:
            async for batch in self.session.outgoing(self.connection, self.stream.on_lag):
                for text in batch[:-1]:
                    self.write_message(text)  # queued in order on the stream; the last one is awaited
                await self.write_message(batch[-1])
        except WebSocketClosedError:
            return
        except Exception:
            self.log.exception("DataHarbour: the live stream of %s failed", self.session.client_id)
            code, reason = SERVER_ERROR, "the stream failed"
        finally:
            self.stream.disconnect(self.session, self.connection)
        if self.stream.stopped:
            code, reason = GOING_AWAY, "the server is stopping"
        if self.ws_connection is not None and not self.ws_connection.is_closing():
            self.close(code, reason)

    async def on_message(self, message):
        # Awaited: Tornado reads the client's next message only after this one is handled.
        if self.session is not None:
            await self.stream.receive(self.session, message)

    def on_close(self):
        if self.writer is not None:
            self.writer.cancel()
        if self.session is not None:
            self.stream.disconnect(self.session, self.connection)
