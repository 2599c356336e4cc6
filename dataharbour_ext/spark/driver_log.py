"""What a run's log says about how it failed: the program's own exception line.

The engine's other signals (readiness, application id, UI address) come from the file the
run's bootstrap writes (`driver_signals.py`), not from the log.
"""

import re

_LOG_LINE = re.compile(r"^\d{2}/\d{2}/\d{2} \d{2}:\d{2}:\d{2} [A-Z]+ ")
_TRACEBACK = "Traceback (most recent call last):"
MAX_ERROR_LENGTH = 1000


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
