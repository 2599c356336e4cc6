"""The Jupyter server's own log records, the latest few thousand, kept in memory so that
`GET /api/v1/monitoring/services/jupyter/logs` can show them."""

import logging
from collections import deque
from collections.abc import Callable


class ServerLogBuffer(logging.Handler):
    """A logging handler that keeps the last `capacity` records, formatted as the server
    formats its own lines. Attach it to the loggers whose records it should keep.

    Emitting is an append to a bounded deque (the oldest record falls out); reading copies
    the deque. Neither does I/O, so both are fine on the event loop.

    `level` gives the level the server prints at (its `log_level`): traitlets leaves the
    server's logger at DEBUG and filters on its console handler, so without a level of its
    own the buffer would fill with a DEBUG line per successful request."""

    def __init__(self, capacity: int = 2000, formatter: logging.Formatter | None = None, *,
                 level: Callable[[], int | str] = lambda: logging.NOTSET):
        super().__init__()
        self.records: deque[str] = deque(maxlen=capacity)
        self._attached: list[logging.Logger] = []
        self._level = level
        self.setLevel(level())
        if formatter is not None:
            self.setFormatter(formatter)

    def emit(self, record: logging.LogRecord) -> None:
        # `handle` holds the handler's lock around this: appends from threads never interleave.
        try:
            self.records.append(self.format(record))
        except Exception:
            self.handleError(record)

    def attach(self, *loggers: logging.Logger) -> None:
        """Idempotent: attaching again restores the buffer where logging was reconfigured
        meanwhile (traitlets re-applies its logging config when a logging trait changes),
        and takes the server's log level as it is now."""
        self.setLevel(self._level())
        for logger in loggers:
            if self not in logger.handlers:
                logger.addHandler(self)
            if logger not in self._attached:
                self._attached.append(logger)

    @property
    def loggers(self) -> list[logging.Logger]:
        return list(self._attached)

    def detach(self) -> None:
        for logger in self._attached:
            logger.removeHandler(self)
        self._attached.clear()

    def tail(self, count: int) -> list[str]:
        """The last `count` lines (a record with a traceback is several lines), oldest first."""
        with self.lock:  # a copy while another thread appends would fail
            records = list(self.records)
        newest_first: list[list[str]] = []
        found = 0
        for text in reversed(records):
            lines = text.splitlines() or [""]
            newest_first.append(lines)
            found += len(lines)
            if found >= count:
                break
        lines = [line for record in reversed(newest_first) for line in record]
        return lines[-count:]
