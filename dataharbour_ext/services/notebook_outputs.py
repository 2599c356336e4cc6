"""NotebookOutputs: the notebook a cell execute runs from, and where its outputs are stored.

- Outputs are stored after the answer (a save costs more than a short cell's run), the
  notebook's store lock held from before the answer until the outputs are written, so the
  notebook API's reads, which wait for that lock, see them. The notebook is read again just before saving, so edits
  made to other cells while the cell ran are kept; a cell deleted meanwhile is not stored, and
  the result still returned.
- Reads cost a stat: it keeps, per notebook, the content it last read or saved and the
  file's version then (modification time and size, from the contents manager). While the file
  keeps that version, the content is used again instead of reading and validating the whole
  notebook; any other write (JupyterLab's, the notebook API's, an editor's) changes the
  version, and the notebook is read again.
- Stores overlap the next execute: while a store of ours holds a notebook's lock, an execute on
  it runs from the content being saved (the file is becoming it), or reads the file under that
  store's lock, instead of waiting for the save. Its outputs, answered before the store ends,
  join it: the store saves once more before it lets the lock go. Saves of one notebook are at
  least STORE_INTERVAL_SECONDS apart (a save holds the event loop for milliseconds: the
  notary's database, fsync), so the outputs of cells run in quick succession are saved
  together; a cell run after a pause is saved at once. A store takes in the outputs of executes
  that start within STORE_HOLD_SECONDS of its beginning; later ones wait for the lock, so that
  the notebook API's calls waiting for it get their turn.

Every read and write goes through the server's contents manager (a synchronous one is called
on the loop, as Jupyter's own contents handlers call it: its events' listeners, the File ID
service's, are tasks of the calling thread; see services/notebook_contents.py).
"""

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from jupyter_server.utils import ensure_async
from nbformat import NotebookNode

from ..errors import InvalidInput, NotFound

if TYPE_CHECKING:
    from .notebook_execution import CellRun

log = logging.getLogger("dataharbour_ext.notebooks")

# Seconds a store may go on taking in the outputs of executes that start meanwhile (see the
# module's docstring); an execute starting later waits for the store lock, behind the API's calls.
STORE_HOLD_SECONDS = 1.0
# Seconds from one save of a notebook's outputs to the next (see the module's docstring).
STORE_INTERVAL_SECONDS = 0.1
# Seconds a notebook's content is kept after its last execute (a script's next cell comes soon).
KEEP_CONTENT_SECONDS = 30.0


@dataclass
class _Version:
    """A notebook's content as read from, or saved to, `path`; `stamp`: the file's version then."""

    path: str
    stamp: tuple
    nb: NotebookNode


@dataclass
class _NotebookState:
    known: _Version | None = None  # the file as we last read or saved it
    # Held while we read or write the file: inside the store lock, or while a store
    # of ours holds that lock (which it lets go only once it has `io`).
    io: asyncio.Lock = field(default_factory=asyncio.Lock)
    writing: tuple[str, NotebookNode] | None = None  # (path, content) of a save under way
    pending: dict[str, "CellRun"] = field(default_factory=dict)  # answered, not yet stored, by cell id
    store: asyncio.Task | None = None  # holds the store lock while set, until `pending` is stored
    store_began: float = 0.0
    last_round: float = -math.inf  # when a store last began to write outputs
    last_used: float = 0.0


class NotebookOutputs:
    """`contents_manager`: the server's contents manager, or a function that returns it at each
    call (jupytext's extension replaces the manager after ours has loaded). `store_lock`: held
    (by notebook id) while the notebook is read and its outputs stored: the lock the notebook
    API's own changes hold, so an added cell and stored outputs both land. `locate`: where the
    notebook is now (by id), so outputs follow a rename made while the cell ran. `busy`: whether
    an execute on the notebook is under way (its content is then kept)."""

    def __init__(self, contents_manager,
                 store_lock: Callable[[str], contextlib.AbstractAsyncContextManager] | None = None,
                 locate: Callable[[str], str] | None = None,
                 busy: Callable[[str], bool] = lambda notebook_id: False):  # fmt: skip
        self._contents_manager = contents_manager
        self._store_lock = store_lock or (lambda notebook_id: contextlib.nullcontext())
        self._locate = locate
        self._busy = busy
        self._stores: set[asyncio.Task] = set()  # outputs being stored after their answer
        self._states: dict[str, _NotebookState] = {}  # by notebook id
        self._forget_later: asyncio.TimerHandle | None = None

    async def settled(self) -> None:
        """Once the outputs of every execute answered so far are stored."""
        while self._stores:
            await asyncio.gather(*self._stores, return_exceptions=True)

    async def stop(self) -> None:
        await self.settled()
        self._states.clear()
        if self._forget_later is not None:
            self._forget_later.cancel()
            self._forget_later = None

    def _state_of(self, notebook_id: str) -> _NotebookState:
        state = self._states.get(notebook_id)
        if state is None:
            state = self._states[notebook_id] = _NotebookState()
            if self._forget_later is None:
                self._forget_later = asyncio.get_running_loop().call_later(KEEP_CONTENT_SECONDS, self._forget_idle)
        state.last_used = time.monotonic()
        return state

    def _forget_idle(self) -> None:
        """Drop the content of notebooks not executed for KEEP_CONTENT_SECONDS (it can be megabytes)."""
        self._forget_later = None
        now = time.monotonic()
        for notebook_id, state in list(self._states.items()):
            idle = state.store is None and not self._busy(notebook_id)
            if idle and now - state.last_used >= KEEP_CONTENT_SECONDS:
                del self._states[notebook_id]
        if self._states:
            self._forget_later = asyncio.get_running_loop().call_later(KEEP_CONTENT_SECONDS, self._forget_idle)

    async def notebook_to_run(self, notebook_id: str, path: str) -> NotebookNode:
        """The notebook's content, to be read only (stores change it). While a store of ours holds
        the store lock: the content it is writing (the file is becoming it; waiting for the save
        would add its time to this execute's), else the file's, read under that store's lock."""
        state = self._state_of(notebook_id)
        if state.store is not None and time.monotonic() - state.store_began < STORE_HOLD_SECONDS:
            if state.writing is not None and state.writing[0] == path:
                return state.writing[1]
            async with state.io:
                if state.store is not None:  # it keeps the store lock until `io` is let go
                    return await self._current(state, path)
        async with self._store_lock(notebook_id), state.io:  # not while outputs are being saved: a save writes in place
            return await self._current(state, path)

    async def _current(self, state: _NotebookState, path: str) -> NotebookNode:
        """The content of the notebook at `path`: the one known if the file still has its version,
        else read (and known from now on). The caller holds `state.io`."""
        known = state.known
        if known is not None and known.path == path:
            if _stamp(await self._get(path, content=False)) == known.stamp:
                return known.nb
        state.known = None
        model = await self._get(path, content=True)
        stamp = _stamp(model)
        if stamp is not None:
            state.known = _Version(path, stamp, model["content"])
        return model["content"]

    async def store_after_answer(self, notebook_id: str, path: str, cell_id: str, run: "CellRun") -> None:
        """Have the outputs of `run` stored after the answer, the store lock held from now on: a
        read of the notebook through the API, which waits for that lock, sees them. While a store
        of the notebook is under way, they join it: it saves them before it lets the lock go."""
        state = self._state_of(notebook_id)
        if state.store is not None:
            state.pending[cell_id] = run
            return
        guard = self._store_lock(notebook_id)
        await guard.__aenter__()
        state.pending[cell_id] = run
        state.store_began = time.monotonic()
        task = asyncio.create_task(self._store_pending(notebook_id, state, path, guard),
                                   name=f"dataharbour-store-{notebook_id}")  # fmt: skip
        state.store = task
        self._stores.add(task)
        task.add_done_callback(self._stores.discard)

    async def _store_pending(self, notebook_id: str, state: _NotebookState, path: str, guard) -> None:
        """Store the pending outputs, round after round while executes answered meanwhile add
        theirs, a round at most every STORE_INTERVAL_SECONDS; then let the store lock go."""
        try:
            while True:
                if not state.pending:
                    async with state.io:  # an execute reading the file under our lock is done
                        if not state.pending:
                            state.store = None  # from now on an answer starts a store of its own
                            return
                wait = state.last_round + STORE_INTERVAL_SECONDS - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                state.last_round = time.monotonic()
                runs, state.pending = state.pending, {}
                try:
                    await self._store_runs(notebook_id, state, path, runs)
                except Exception:
                    state.known = None
                    log.exception("DataHarbour: the outputs of cells %s could not be stored in %s",
                                  ", ".join(runs), path)  # fmt: skip
        finally:
            state.store = None
            await guard.__aexit__(None, None, None)

    async def _store_runs(self, notebook_id: str, state: _NotebookState, path: str, runs: dict[str, "CellRun"]) -> None:
        where = path
        if self._locate is not None:
            try:
                where = self._locate(notebook_id)  # renamed while the cell ran: where it is now
            except NotFound:
                log.info("DataHarbour: notebook %s is gone; the outputs of cells %s are not stored",
                         notebook_id, ", ".join(runs))  # fmt: skip
                state.known = None
                return
        async with state.io:
            try:
                nb = await self._current(state, where)  # edits made meanwhile are in it
            except NotFound:
                log.info("DataHarbour: %s is gone; the outputs of cells %s are not stored", where, ", ".join(runs))
                return
            changed = False
            for cell_id, run in runs.items():
                cell = next((c for c in nb.cells if c.get("id") == cell_id), None)
                if cell is None:
                    log.info("DataHarbour: cell %s left %s while it ran; its outputs are not stored", cell_id, where)
                    continue
                cell.outputs = run.outputs
                cell.execution_count = run.execution_count
                changed = True
            if not changed:
                return
            state.known = None  # the file is not what we know until the save is done
            state.writing = (where, nb)
            try:
                model = await self._contents("save", {"type": "notebook", "format": "json", "content": nb}, where)
            finally:
                state.writing = None
            stamp = _stamp(model)
            state.known = _Version(where, stamp, nb) if stamp is not None else None

    async def _get(self, path: str, content: bool) -> dict:
        try:
            return await self._contents("get", path, content=content, type="notebook")
        except Exception as error:
            status = getattr(error, "status_code", None)  # the manager's tornado HTTPError
            if status == 404:
                raise NotFound(f"no notebook at {path}") from None
            if status is not None and 400 <= status < 500:
                raise InvalidInput("path", getattr(error, "log_message", None) or str(error)) from None
            raise

    async def _contents(self, method_name: str, *args, **kwargs):
        """Call the contents manager, awaited. A synchronous one is called on the loop, as
        Jupyter's own contents handlers call it: its events' listeners (the File ID service's)
        are tasks of the calling thread (services/notebook_contents.py)."""
        return await ensure_async(getattr(self._manager(), method_name)(*args, **kwargs))

    def _manager(self):
        return self._contents_manager() if callable(self._contents_manager) else self._contents_manager


def _stamp(model: dict) -> tuple | None:
    """The version of the file a contents model describes: its modification time and size (a
    paired notebook's time is its newest file's, with jupytext); None if the manager lacks one.
    A write of the same size within one tick of the file system's clock as ours goes unseen (a
    tick is nanoseconds on recent Linux, a few milliseconds on older kernels): the same kind of
    race as a write that lands between the re-read before a save and the save."""
    modified, size = model.get("last_modified"), model.get("size")
    if modified is None or size is None:
        return None
    return (modified, size)
