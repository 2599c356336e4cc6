"""CellExecutor: runs one code cell of a notebook in the kernel of the notebook's Jupyter session
and stores its outputs and execution count in the notebook, as JupyterLab does.

- The kernel: that of the session whose path is the notebook's (the one JupyterLab uses when
  the notebook is open), else a new session made through the session manager, so that
  JupyterLab opening the notebook later joins the same kernel.
- The run: nbclient's `async_execute_cell` on a client of that kernel (outputs, clear_output,
  display updates, stream merging as nbclient does them), on a copy of the cell. A timeout
  interrupts the kernel and returns what came so far; an error in the cell is its traceback output.
- The store: the notebook's content comes from, and the outputs go to, a NotebookOutputs
  (services/notebook_outputs.py): stored after the answer, reads that cost a stat, saves that
  overlap the next execute and take in its outputs.

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

import nbformat
import zmq
from jupyter_client.kernelspec import NoSuchKernel
from jupyter_client.session import new_id
from jupyter_server.utils import ensure_async
from nbclient import NotebookClient
from nbclient.exceptions import DeadKernelError
from nbformat import NotebookNode

from ..errors import Conflict, InvalidInput, NotFound, ServiceUnavailable
from .notebook_outputs import NotebookOutputs

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
        self.default_timeout = default_timeout
        self.connect_timeout = connect_timeout
        self._notebooks = _KeyedLocks()
        self._kernels = _KeyedLocks()
        self._links: dict[str, _KernelLink] = {}
        self.outputs = NotebookOutputs(contents_manager, store_lock, locate, busy=self._notebooks.held)

    async def execute(self, notebook_id: str, path: str, cell_id: str, timeout: float | None = None) -> CellRun:
        """Run cell `cell_id` of notebook `notebook_id` (at `path` now)."""
        timeout = self.default_timeout if timeout is None else timeout
        if not timeout > 0:
            raise InvalidInput("timeout", "must be a positive number of seconds")
        path = path.strip("/")
        async with self._notebooks.hold(notebook_id):
            nb = await self.outputs.notebook_to_run(notebook_id, path)
            cell = nb.cells[_cell_index(nb, cell_id)]
            if cell.cell_type != "code":
                raise InvalidInput("cell_id", f"cell {cell_id} is a {cell.cell_type} cell; "
                                              "only code cells can be executed")  # fmt: skip
            if not cell.source.strip():
                run = CellRun("ok", None, [])  # as JupyterLab: nothing to send, outputs cleared
            else:
                # Taken now: the content is shared with the notebook's stores, which change it.
                kernel_name = (nb.metadata.get("kernelspec") or {}).get("name")
                cell = nbformat.from_dict({**cell, "outputs": [], "execution_count": None})
                kernel_id = await self._kernel_of(path, kernel_name)
                run = await self._run_in_kernel(kernel_id, cell, timeout)
            await self.outputs.store_after_answer(notebook_id, path, cell_id, run)
            return run

    async def settled(self) -> None:
        """Once the outputs of every execute answered so far are stored."""
        await self.outputs.settled()

    async def stop(self) -> None:
        await self.outputs.stop()
        for link in self._links.values():
            link.close()
        self._links.clear()

    # ---- the kernel -------------------------------------------------------------------

    async def _kernel_of(self, path: str, kernel_name: str | None) -> str:
        """The kernel id of the notebook's session, made if there is none."""
        for session in await ensure_async(self.session_manager.list_sessions()):
            if (session.get("path") or "").strip("/") == path and session.get("kernel"):
                return session["kernel"]["id"]
        kernel_name = kernel_name or self.kernel_manager.default_kernel_name
        try:
            session = await ensure_async(self.session_manager.create_session(
                path=path, name=posixpath.basename(path), type="notebook", kernel_name=kernel_name))  # fmt: skip
        except NoSuchKernel:
            raise Conflict(f"the notebook's kernel {kernel_name!r} is not installed on this server") from None
        log.info("DataHarbour: started kernel %s (%s) for %s", session["kernel"]["id"], kernel_name, path)
        return session["kernel"]["id"]

    async def _run_in_kernel(self, kernel_id: str, cell: NotebookNode, timeout: float) -> CellRun:
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
                return await _run_cell(kernel, link, cell, timeout)
            except DeadKernelError:
                self._close_link(kernel_id)
                if _being_cancelled():
                    raise asyncio.CancelledError() from None  # nbclient says "dead" when cancelled
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


def _being_cancelled() -> bool:
    task = asyncio.current_task()
    return bool(getattr(task, "cancelling", None) and task.cancelling())  # Python 3.11+


def _cell_index(nb, cell_id: str) -> int:
    for index, cell in enumerate(nb.cells):
        if cell.get("id") == cell_id:
            return index
    raise NotFound(f"no cell {cell_id} in the notebook")


async def _run_cell(kernel, link: "_KernelLink", cell: NotebookNode, timeout: float) -> CellRun:
    """Run `cell` (a copy of the notebook's, filled with its outputs here)."""
    replies: list[dict] = []
    client = link.notebook_client
    # A notebook of this cell alone: nbclient keeps the cell there, and display updates find it there.
    client.nb = NotebookNode(nbformat=4, nbformat_minor=5, metadata=NotebookNode(), cells=[cell])
    client.timeout_func = lambda cell: timeout  # the `timeout` trait takes whole seconds only
    client.on_cell_executed = lambda execute_reply, **_: replies.append(execute_reply)
    client.reset_execution_trackers()  # the displays, widgets and comms of earlier executes
    await client.async_execute_cell(cell, 0, store_history=True)
    cell = client.nb.cells[0]
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
        # nbclient's client for this kernel, kept too (making one costs ~0.3 ms); executes on a
        # kernel run one at a time, and each gives it its cell, timeout and reply hook.
        self.notebook_client = NotebookClient(
            NotebookNode(), km=kernel, log=log,
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
        )  # fmt: skip
        self.notebook_client.kc = self.client
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
