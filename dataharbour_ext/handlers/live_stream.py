"""WS {base_url}api/v1/ws/{client_id} (and the seed's {base_url}ws/{client_id}): live updates.

Authenticated and authorized like Jupyter's own websockets: `@ws_authenticated` on `get`,
the authorizer asked in `pre_get`, the Origin checked by `WebSocketMixin`. The protocol
lives in services/live_stream.py; this handler only moves text.
"""

import asyncio

from jupyter_core.utils import ensure_async
from jupyter_server.auth.decorator import ws_authenticated
from jupyter_server.base.handlers import JupyterHandler
from jupyter_server.base.websocket import WebSocketMixin
from tornado import web
from tornado.websocket import WebSocketClosedError, WebSocketHandler

AUTH_RESOURCE = "dataharbour:events"


class LiveStreamHandler(WebSocketMixin, WebSocketHandler, JupyterHandler):
    auth_resource = AUTH_RESOURCE

    def set_default_headers(self):
        """JupyterHandler's API headers make no sense on a websocket upgrade."""

    @property
    def stream(self):
        return self.settings["dataharbour"]["stream"]

    async def pre_get(self):
        user = self.current_user
        if not await ensure_async(self.authorizer.is_authorized(self, user, "read", AUTH_RESOURCE)):
            raise web.HTTPError(403)
        if not self.stream.valid_client_id(self.client_id):
            raise web.HTTPError(400, "client_id: 1-128 letters, digits, '.', '_', '~' or '-', starting with a "
                                     "letter or digit")
        since = self.get_query_argument("since_seq", None)
        if since is not None and not (since.isascii() and since.isdigit() and len(since) <= 18):
            raise web.HTTPError(400, "since_seq: the seq of the last message received (an integer >= 0)")
        self.since_seq = int(since) if since is not None else None

    @ws_authenticated
    async def get(self, client_id: str):
        self.client_id = client_id
        await self.pre_get()
        await super().get(client_id=client_id)

    async def open(self, client_id: str):
        super().open()  # Jupyter's keep-alive pings
        self.session, self.connection = await self.stream.connect(self.current_user.username, client_id,
                                                                  self.since_seq)
        self.writer = asyncio.create_task(self._write_all(), name=f"dataharbour-ws-{client_id}")

    async def _write_all(self) -> None:
        try:
            async for text in self.session.outgoing(self.connection, self.stream.on_lag):
                await self.write_message(text)
        except WebSocketClosedError:
            pass
        finally:
            if self.ws_connection is not None and not self.ws_connection.is_closing():
                self.close(4000, "this client id was connected again elsewhere")

    def on_message(self, message):
        task = asyncio.create_task(self.stream.receive(self.session, message))
        task.add_done_callback(lambda t: t.cancelled() or t.exception())  # receive reports errors itself

    def on_close(self):
        writer = getattr(self, "writer", None)
        if writer is not None:
            writer.cancel()
            self.stream.disconnect(self.session, self.connection)
