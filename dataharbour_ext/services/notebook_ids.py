"""Notebook ids: Jupyter's File ID service (jupyter_server_fileid). An id follows its file
through renames and moves, in the API and in JupyterLab: the service's manager listens to the
contents manager's rename, copy and delete events.

Its calls stay on the event loop: the manager holds one sqlite3 connection opened on the
loop's thread with sqlite's default check_same_thread, which refuses every other thread.
Each call is short: one lookup on an indexed column, or, for a file seen for the first
time, one insert.
"""

from collections.abc import Callable

from ..errors import NotFound, ServiceUnavailable
from ..models import NOTEBOOK_SUFFIX


class NotebookIds:
    def __init__(self, file_id_manager: Callable[[], object | None]):
        # Looked up at each call: the File ID extension loads after ours (extensions load by name).
        self._file_id_manager = file_id_manager

    @property
    def manager(self):
        manager = self._file_id_manager()
        if manager is None:
            raise ServiceUnavailable(
                "notebook ids come from Jupyter's File ID service: enable the jupyter_server_fileid server extension"
            )
        return manager

    def id_of(self, path: str) -> str:
        """The id of the file at `path`, given it one if it had none."""
        notebook_id = self.manager.index(path)
        if notebook_id is None:  # the local manager indexes only files it can stat
            raise NotFound(f"file or directory {path!r} does not exist")
        return notebook_id

    def path_of(self, notebook_id: str) -> str:
        """Where the notebook `notebook_id` is now; 404 for an unknown id or one of another kind of file."""
        path = self.manager.get_path(notebook_id)
        if not path or not path.endswith(NOTEBOOK_SUFFIX):
            raise NotFound(f"no notebook with id {notebook_id!r}")
        return path

    def moved(self, old_path: str, new_path: str) -> None:
        """Record a rename now: the manager's own listener runs later, as a task (and then finds
        nothing left to move)."""
        self.manager.move(old_path, new_path)

    def deleted(self, path: str) -> None:
        self.manager.delete(path)
