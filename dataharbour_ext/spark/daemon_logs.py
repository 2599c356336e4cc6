"""The logs of a cluster's daemons read as one log: each line tagged with its daemon, the
daemons' entries merged by their timestamps, newest last.

A Spark log entry starts with `yy/MM/dd HH:mm:ss` (the pattern of Spark's log4j2 defaults);
the lines after it without one (a stack trace) belong to it and stay with it. A service log
source (services/service_logs.py): `tail(count)` blocks on file reads, so it is called in a
thread.
"""

import os
import re
import time
from collections.abc import Callable, Sequence

from ..store.log_files import read_tail

TIMESTAMP = re.compile(r"^(\d\d/\d\d/\d\d \d\d:\d\d:\d\d)\s")


class DaemonLogs:
    """`daemons()` gives (name, log path) of each daemon, read anew on every call (workers
    come and go with the cluster)."""

    def __init__(self, daemons: Callable[[], Sequence[tuple[str, str | os.PathLike]]]):
        self.daemons = daemons

    def tail(self, count: int) -> list[str]:
        entries: list[tuple[str, int, int, list[str]]] = []  # (time, daemon index, position, lines)
        for index, (name, path) in enumerate(self.daemons()):
            try:
                modified = time.strftime("%y/%m/%d %H:%M:%S", time.localtime(os.stat(path).st_mtime))
            except OSError:
                continue
            own: list[tuple[str | None, list[str]]] = []
            for line in read_tail(os.fspath(path), count, final=True).lines:
                found = TIMESTAMP.match(line)
                if found or not own:
                    own.append((found.group(1) if found else None, []))
                own[-1][1].append(f"[{name}] {line}")
            # Lines before the first time in view (a stack trace cut by the tail, spark-class's
            # own words) were written before the next time seen, or by the last write at latest.
            later = modified
            for position in range(len(own) - 1, -1, -1):
                stamp, lines = own[position]
                later = stamp or later
                entries.append((later, index, position, lines))
        # Sorted by time (Spark logs whole seconds); entries of one second keep each daemon's order.
        entries.sort(key=lambda entry: (entry[0], entry[1], entry[2]))
        merged = [line for entry in entries for line in entry[3]]
        return merged[-count:]
