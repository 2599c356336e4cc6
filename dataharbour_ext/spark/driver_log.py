"""What a driver's log tells: where its UI listens, when it stopped, and why the program failed."""

import re
from dataclasses import dataclass

# "INFO Utils: Successfully started service 'SparkUI' on port 4041."
_UI_SERVICE = re.compile(rb"Successfully started service 'SparkUI' on port (\d+)")
_UI_STOPPED = re.compile(rb"Stopped Spark web UI at ")
# The driver's block manager is the last part of SparkContext start-up in every deploy mode.
_CONTEXT_READY = re.compile(rb"Initialized BlockManager: BlockManagerId\(driver")
# "Connected to Spark cluster with app ID app-20240101010101-0000" (standalone), YARN/k8s similar.
_APP_ID = re.compile(
    rb"(?:with app ID|Submitted application|application identifier:?)\s+((?:app|application|local|spark)[-_][\w\-]+)"
)
_LOG_LINE = re.compile(r"^\d{2}/\d{2}/\d{2} \d{2}:\d{2}:\d{2} [A-Z]+ ")
_TRACEBACK = "Traceback (most recent call last):"
MAX_ERROR_LENGTH = 1000


@dataclass
class DriverEvents:
    ui_port: int | None = None
    ui_stopped: bool = False
    context_ready: bool = False
    app_id: str | None = None


def scan(chunk: bytes, found: DriverEvents) -> DriverEvents:
    """Update `found` with what this chunk of whole log lines reveals."""
    # The port counts once Spark says the service started: Jetty is bound by then.
    if found.ui_port is None and (match := _UI_SERVICE.search(chunk)):
        found.ui_port = int(match.group(1))
    if not found.context_ready and _CONTEXT_READY.search(chunk):
        found.context_ready = True
    if found.ui_port is not None and not found.ui_stopped and _UI_STOPPED.search(chunk):
        found.ui_stopped = True
    if found.app_id is None and (match := _APP_ID.search(chunk)):
        found.app_id = match.group(1).decode()
    return found


class DriverLogFollower:
    """Reads a growing driver log a whole line at a time and keeps what it revealed."""

    MAX_READ = 4 * 1024 * 1024

    def __init__(self, path: str):
        self.path = path
        self.offset = 0
        self.events = DriverEvents()

    def poll(self) -> DriverEvents:
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                chunk = f.read(self.MAX_READ)
        except FileNotFoundError:
            return self.events
        end = chunk.rfind(b"\n") + 1
        if end == 0:
            if len(chunk) < self.MAX_READ:
                return self.events  # wait for the rest of the line
            end = len(chunk)  # one enormous line (progress bars with \r): skip past it
        self.offset += end
        return scan(chunk[:end], self.events)


def error_summary(log_tail: str, exit_code: int | None) -> str:
    """The user's exception line ("ValueError: bad input") if the log has a traceback.

    Falls back to the last ERROR log line, then to the exit code.
    """
    lines = log_tail.splitlines()
    start = max((i for i, line in enumerate(lines) if line.startswith(_TRACEBACK)), default=None)
    if start is not None:
        for line in lines[start + 1 :]:
            if line and not line[0].isspace() and not _LOG_LINE.match(line):
                return line.strip()[:MAX_ERROR_LENGTH]
    for line in reversed(lines):
        if " ERROR " in line and _LOG_LINE.match(line):
            return _LOG_LINE.sub("", line).strip()[:MAX_ERROR_LENGTH]
    if exit_code is None:
        return "the run ended without an exit status"
    if exit_code < 0:
        return f"terminated by signal {-exit_code}"
    return f"exited with code {exit_code}"
