"""CellExecutor: runs one code cell of a notebook in the kernel of the notebook's Jupyter session
and stores its outputs and execution count in the notebook, as JupyterLab does.

- The kernel: that of the session whose path is the notebook's (the one JupyterLab uses when
  the notebook is open), else a new session made through the session manager, so that
  JupyterLab opening the notebook later joins the same kernel.
- The run: nbclient's `async_execute_cell` on a client of that kernel (outputs, clear_output,
  display updates, stream merging as nbclient does them). A timeout interrupts the kernel and
  returns what came so far; an error in the cell is its traceback output.
- The store: the notebook is read again just before saving, so edits made to other cells while
  the cell ran are kept; a cell deleted meanwhile is not stored, and the result still returned.

Executes on one notebook run one after the other (a lock per notebook id), and so do executes on one
kernel (they share its client, see _KernelLink). Markdown and raw cells are refused (InvalidInput):
executing one through the API is a mistake worth saying, not an "ok" that did nothing.
"""

import asyncio
import contextlib
import logging
import posixpath
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from queue import Empty

import zmq
from jupyter_client.kernelspec import NoSuchKernel
from jupyter_client.session import new_id
from jupyter_server.utils import ensure_async
from nbclient import NotebookClient
from nbclient.exceptions import DeadKernelError

from ..errors import Conflict, InvalidInput, NotFound, ServiceUnavailable

log = logging.getLogger("dataharbour_ext.notebooks")

# The ename of the execute reply nbclient makes up when a timeout interrupted the kernel
# (its `error_on_timeout`); no kernel sends it, so it tells a timeout from an error.
TIMEOUT_ENAME = "DataHarbourCellTimeout"
# How often a kernel not yet confirmed as connected is asked for its kernel info again.
NUDGE_INTERVAL = 0.25
# Seconds a kernel's client stays subscribed to its output after an execute.
KEEP_SUBSCRIBED = 2.0


@dataclass
class CellRun:
    status: str  # "ok" | "error" | "timeout"
    execution_count: int | None
    outputs: list[dict]  # nbformat v4 output dicts
    message: str | None = None  # timeout: "interrupted after N s"; error: "ename: evalue"


# How long outputs may trail a cell's end (or its interrupt: the KeyboardInterrupt traceback);
# a cell that ends normally is followed by its idle status at once, so this costs it nothing.
IOPUB_PATIENCE_SECONDS = 10.0


class CellExecutor:
    """`contents_manager`: the server's contents manager, or a function that returns it at each
    call (jupytext's extension replaces the manager after ours has loaded)."""

    def __init__(self, kernel_manager, session_manager, contents_manager, default_timeout: float = 60.0,
                 connect_timeout: float = 60.0,
                 store_lock: Callable[[str], contextlib.AbstractAsyncContextManager] | None = None,
                 locate: Callable[[str], str] | None = None):  # fmt: skip
        self.kernel_manager = kernel_manager
        self.session_manager = session_manager
        self._contents_manager = contents_manager
        # Held (by notebook id) while the notebook is read and its outputs stored: the lock the
        # notebook API's own changes hold, so an added cell and stored outputs both land.
        self._store_lock = store_lock or (lambda notebook_id: contextlib.nullcontext())
        # Where the notebook is now (by id): outputs follow a rename made while the cell ran.
        self._locate = locate
        self.default_timeout = default_timeout
        self.connect_timeout = connect_timeout
        self._notebooks = _KeyedLocks()
        self._kernels = _KeyedLocks()
        self._links: dict[str, _KernelLink] = {}
        self._stores: set[asyncio.Task] = set()  # outputs being stored after their answer

    async def execute(self, notebook_id: str, path: str, cell_id: str, timeout: float | None = None) -> CellRun:
        """Run cell `cell_id` of notebook `notebook_id` (at `path` now)."""
        timeout = self.default_timeout if timeout is None else timeout
        if not timeout > 0:
            raise InvalidInput("timeout", "must be a positive number of seconds")
        path = path.strip("/")
        async with self._notebooks.hold(notebook_id):
            async with self._store_lock(notebook_id):  # not while outputs are being saved: a save writes in place
                nb = await self._read(path)
            index = _cell_index(nb, cell_id)
            if nb.cells[index].cell_type != "code":
                raise InvalidInput("cell_id", f"cell {cell_id} is a {nb.cells[index].cell_type} cell; "
                                              "only code cells can be executed")  # fmt: skip
            if not nb.cells[index].source.strip():
                run = CellRun("ok", None, [])  # as JupyterLab: nothing to send, outputs cleared
            else:
                kernel_id = await self._kernel_of(path, nb)
                run = await self._run_in_kernel(kernel_id, nb, index, timeout)
            await self._begin_store(notebook_id, path, cell_id, run)
            return run

    async def settled(self) -> None:
        """Once the outputs of every execute answered so far are stored."""
        while self._stores:
            await asyncio.gather(*self._stores, return_exceptions=True)

    async def stop(self) -> None:
        if self._stores:
            await asyncio.gather(*self._stores, return_exceptions=True)
        for link in self._links.values():
            link.close()
        self._links.clear()

    # ---- the kernel -------------------------------------------------------------------

    async def _kernel_of(self, path: str, nb) -> str:
        """The kernel id of the notebook's session, made if there is none."""
        for session in await ensure_async(self.session_manager.list_sessions()):
            if (session.get("path") or "").strip("/") == path and session.get("kernel"):
                return session["kernel"]["id"]
        kernel_name = (nb.metadata.get("kernelspec") or {}).get("name") or self.kernel_manager.default_kernel_name
        try:
            session = await ensure_async(self.session_manager.create_session(
                path=path, name=posixpath.basename(path), type="notebook", kernel_name=kernel_name))  # fmt: skip
        except NoSuchKernel:
            raise Conflict(f"the notebook's kernel {kernel_name!r} is not installed on this server") from None
        log.info("DataHarbour: started kernel %s (%s) for %s", session["kernel"]["id"], kernel_name, path)
        return session["kernel"]["id"]

    async def _run_in_kernel(self, kernel_id: str, nb, index: int, timeout: float) -> CellRun:
        self._close_links_of_gone_kernels()
        async with self._kernels.hold(kernel_id):
            try:
                kernel = self.kernel_manager.get_kernel(kernel_id)
            except KeyError:
                raise Conflict(f"the kernel {kernel_id} of the notebook's session is gone") from None
            if not kernel.ready.done():  # a pending kernel (use_pending_kernels) is still starting
                await asyncio.shield(asyncio.wrap_future(kernel.ready))
            link = self._links.get(kernel_id)
            if link is not None and link.ports != tuple(kernel.ports):  # restarted on new ports
                self._close_link(kernel_id)
                link = None
            if link is None:
                link = self._links[kernel_id] = _KernelLink(kernel)
            try:
                await link.attach(self.connect_timeout)
            except BaseException:
                self._close_link(kernel_id)
                raise
            try:
                return await _run_cell(kernel, link, nb, index, timeout)
            except DeadKernelError:
                self._close_link(kernel_id)
                if _being_cancelled():
                    raise asyncio.CancelledError() from None  # nbclient says "dead" when cancelled
                cell = nb.cells[index]
                return CellRun("error", cell.get("execution_count"), list(cell.outputs),
                               "DeadKernelError: the kernel died while running the cell")  # fmt: skip
            finally:
                if self._links.get(kernel_id) is link:
                    link.detach()

    def _close_link(self, kernel_id: str) -> None:
        link = self._links.pop(kernel_id, None)
        if link is not None:
            link.close()

    def _close_links_of_gone_kernels(self) -> None:
        for kernel_id in list(self._links):
            if kernel_id not in self.kernel_manager and not self._kernels.held(kernel_id):
                self._close_link(kernel_id)

    # ---- the notebook -----------------------------------------------------------------

    async def _read(self, path: str):
        try:
            model = await self._contents("get", path, content=True, type="notebook")
        except Exception as error:
            status = getattr(error, "status_code", None)  # the manager's tornado HTTPError
            if status == 404:
                raise NotFound(f"no notebook at {path}") from None
            if status is not None and 400 <= status < 500:
                raise InvalidInput("path", getattr(error, "log_message", None) or str(error)) from None
            raise
        return model["content"]

    async def _begin_store(self, notebook_id: str, path: str, cell_id: str, run: CellRun) -> None:
        """Store the outputs after the answer (a save costs more than the cell's run), holding
        the store lock from now on: a read of the notebook through the API, which waits for that
        lock, sees them, and so does the next execute on it, which reads after this store."""
        guard = self._store_lock(notebook_id)
        await guard.__aenter__()

        async def store() -> None:
            try:
                where = path
                if self._locate is not None:
                    try:
                        where = self._locate(notebook_id)  # renamed while the cell ran: where it is now
                    except NotFound:
                        log.info("DataHarbour: notebook %s is gone; the outputs of cell %s are not stored",
                                 notebook_id, cell_id)
                        return
                await self._store_now(where, cell_id, run)
            except Exception:
                log.exception("DataHarbour: the outputs of cell %s could not be stored in %s", cell_id, path)
            finally:
                await guard.__aexit__(None, None, None)

        task = asyncio.create_task(store(), name=f"dataharbour-store-{cell_id}")
        self._stores.add(task)
        task.add_done_callback(self._stores.discard)

    async def _store_now(self, path: str, cell_id: str, run: CellRun) -> None:
        try:
            nb = await self._read(path)
        except NotFound:
            log.info("DataHarbour: %s is gone; the outputs of cell %s are not stored", path, cell_id)
            return
        cell = next((c for c in nb.cells if c.get("id") == cell_id), None)
        if cell is None:
            log.info("DataHarbour: cell %s left %s while it ran; its outputs are not stored", cell_id, path)
            return
        cell.outputs = run.outputs
        cell.execution_count = run.execution_count
        await self._contents("save", {"type": "notebook", "format": "json", "content": nb}, path)

    async def _contents(self, method_name: str, *args, **kwargs):
        """Call the contents manager, awaited. A synchronous one is called on the loop, as
        Jupyter's own contents handlers call it: its events' listeners (the File ID service's)
        are tasks of the calling thread (services/notebook_contents.py)."""
        manager = self._contents_manager() if callable(self._contents_manager) else self._contents_manager
        return await ensure_async(getattr(manager, method_name)(*args, **kwargs))


def _being_cancelled() -> bool:
    task = asyncio.current_task()
    return bool(getattr(task, "cancelling", None) and task.cancelling())  # Python 3.11+


def _cell_index(nb, cell_id: str) -> int:
    for index, cell in enumerate(nb.cells):
        if cell.get("id") == cell_id:
            return index
    raise NotFound(f"no cell {cell_id} in the notebook")


async def _run_cell(kernel, link: "_KernelLink", nb, index: int, timeout: float) -> CellRun:
    replies: list[dict] = []
    client = NotebookClient(
        nb, km=kernel, log=log,
        timeout_func=lambda cell: timeout,  # the `timeout` trait takes whole seconds only
        interrupt_on_timeout=True,
        iopub_timeout=IOPUB_PATIENCE_SECONDS,
        # Return once interrupted (with the outputs the interrupt brings within iopub_timeout)
        # instead of waiting for a reply that a kernel ignoring SIGINT never sends.
        error_on_timeout={"ename": TIMEOUT_ENAME, "evalue": "", "traceback": []},
        # An error is a result, not an exception; nbclient then sends stop_on_error=False, so a
        # failing cell does not abort the requests queued behind it (JupyterLab's).
        allow_errors=True,
        record_timing=False,  # the stored cell keeps its metadata as it was
        coalesce_streams=True,  # one stdout output, as JupyterLab stores it, not one per flush
        skip_cells_with_tag="",  # "skip-execution" is for whole-notebook runs, not an explicit execute
        on_cell_executed=lambda execute_reply, **_: replies.append(execute_reply),
    )  # fmt: skip
    client.kc = link.client
    cell = nb.cells[index]
    cell.outputs = []
    cell.execution_count = None  # an aborted request has none; never keep the old one
    await client.async_execute_cell(cell, index, store_history=True)
    reply = replies[-1]["content"] if replies else {"status": "error", "ename": "NoReply", "evalue": ""}
    outputs, count = list(cell.outputs), cell.get("execution_count")
    if reply.get("ename") == TIMEOUT_ENAME:
        return CellRun("timeout", count, outputs, f"interrupted after {timeout:g} s")
    if reply["status"] == "ok":
        return CellRun("ok", count, outputs)
    if reply["status"] == "aborted":
        return CellRun("error", count, outputs, "aborted: the kernel dropped the request (an earlier one failed)")
    return CellRun("error", count, outputs, f"{reply.get('ename')}: {reply.get('evalue')}")


class _KernelLink:
    """A client of one kernel, kept between executes: connecting one takes ~5 ms (sockets, then
    proof that IOPub is subscribed). Its IOPub stays subscribed for KEEP_SUBSCRIBED seconds after
    an execute (the next cell of a script comes soon and then costs nothing), then unsubscribes,
    so that the kernel's other output (cells run in JupyterLab) is not queued in this server for
    nobody; subscribing again and proving it takes ~3 ms."""

    def __init__(self, kernel):
        self.ports = tuple(kernel.ports)
        # A session id of its own: it is the client's ZMQ identity on shell and control, and
        # ipykernel hands an identity over to its newest connection, so every other client made
        # by `kernel.client()` (same id) would take this one's replies, and this one theirs.
        session = kernel.session.clone()
        session.session = new_id()
        self.client = kernel.client(session=session)
        self.client.start_channels(stdin=False, hb=False)  # no stdin: input() fails instead of hanging
        self._subscribed = True  # jupyter_client subscribes IOPub to everything
        self._proven = False  # kernel messages seen since subscribing
        self._unsubscribe_later: asyncio.TimerHandle | None = None

    async def attach(self, timeout: float) -> None:
        """Make sure IOPub gets the kernel's messages: an execute sent before the subscription
        reaches the kernel would lose its first outputs. The proof is the status message of a
        kernel_info_request (on control, answered even by a busy ipykernel; on shell too, as
        jupyter_server's nudge does, for kernels that answer only there)."""
        if self._unsubscribe_later is not None:
            self._unsubscribe_later.cancel()
            self._unsubscribe_later = None
        if self._proven:
            return
        if not self._subscribed:
            self.client.iopub_channel.socket.setsockopt(zmq.SUBSCRIBE, b"")
            self._subscribed = True
        for channel in (self.client.control_channel, self.client.shell_channel):
            await _discard_all(channel)  # replies to earlier nudges and to interrupted executes
        deadline = time.monotonic() + timeout
        nudges: set[str] = set()
        while True:
            for channel in (self.client.control_channel, self.client.shell_channel):
                request = self.client.session.msg("kernel_info_request")
                nudges.add(request["header"]["msg_id"])
                channel.send(request)
            round_ends = min(deadline, time.monotonic() + NUDGE_INTERVAL)
            try:
                while True:  # earlier messages still in flight are discarded on the way
                    message = await self.client.iopub_channel.get_msg(timeout=max(0.0, round_ends - time.monotonic()))
                    if message["parent_header"].get("msg_id") in nudges:
                        self._proven = True
                        return
            except Empty:
                if time.monotonic() >= deadline:
                    raise ServiceUnavailable(f"the kernel did not answer within {timeout:g} s") from None

    def detach(self) -> None:
        self._unsubscribe_later = asyncio.get_running_loop().call_later(KEEP_SUBSCRIBED, self._unsubscribe)

    def _unsubscribe(self) -> None:
        self._unsubscribe_later = None
        self.client.iopub_channel.socket.setsockopt(zmq.UNSUBSCRIBE, b"")
        self._subscribed = self._proven = False

    def close(self) -> None:
        if self._unsubscribe_later is not None:
            self._unsubscribe_later.cancel()
        self.client.stop_channels()


async def _discard_all(channel) -> None:
    while True:
        try:
            await channel.get_msg(timeout=0)
        except Empty:
            return


@dataclass
class _KeyedLock:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    users: int = 0


class _KeyedLocks:
    """One asyncio.Lock per key, dropped when nobody holds or waits for it."""

    def __init__(self):
        self._locks: dict[str, _KeyedLock] = {}

    @asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        entry = self._locks.setdefault(key, _KeyedLock())
        entry.users += 1
        try:
            async with entry.lock:
                yield
        finally:
            entry.users -= 1
            if not entry.users:
                del self._locks[key]

    def held(self, key: str) -> bool:
        return key in self._locks
