"""What a run's driver said about itself, read from the file bootstrap.py writes.

The engine learns the application id, the UI address and when the SparkContext came up and
stopped from this file, not from the driver's REST API (whose first call costs the job
seconds of CPU).
"""

import json
import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from .bootstrap import PROGRESS_FILE

SIGNALS_FILE = "spark.json"
MAX_SIGNALS_BYTES = 64 * 1024
COUNTS = ("total", "done", "failed", "active")


@dataclass
class DriverSignals:
    app_id: str | None
    ui_url: str | None
    ui_port: int | None
    ready: bool
    stopped: bool
    ready_at: float | None = None
    stopped_at: float | None = None


def _port(url: str | None) -> int | None:
    if not url:
        return None
    try:
        return urlsplit(url).port
    except ValueError:
        return None


def number(value) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def read_object(path: str | os.PathLike) -> dict | None:
    """The JSON object in a small file the run wrote; None if missing, partial or odd."""
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_SIGNALS_BYTES + 1)
    except OSError:
        return None
    if len(raw) > MAX_SIGNALS_BYTES:
        return None
    try:
        data = json.loads(raw)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def count(value) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def empty_progress() -> dict:
    """Progress with nothing counted yet, in read_progress's shape."""
    return {**{part: dict.fromkeys(COUNTS, 0) for part in ("jobs", "stages", "tasks")},
            "current_stage": None, "percent": 0.0}


def read_progress(run_dir: str | os.PathLike) -> dict | None:
    """The progress bootstrap.py's sampler wrote, checked field by field (the file is
    written by the job's own process)."""
    data = read_object(Path(run_dir) / PROGRESS_FILE)
    if data is None:
        return None
    progress = empty_progress()
    for part in ("jobs", "stages", "tasks"):
        counts = data.get(part) if isinstance(data.get(part), dict) else {}
        progress[part] = {name: count(counts.get(name)) for name in COUNTS}
    stage = data.get("current_stage")
    progress["current_stage"] = stage[:500] if isinstance(stage, str) else None
    percent = number(data.get("percent"))
    progress["percent"] = min(100.0, max(0.0, percent)) if percent is not None else 0.0
    return progress


def read_signals(run_dir: str | os.PathLike) -> DriverSignals | None:
    """None when the file is missing, partial or not what bootstrap.py writes."""
    data = read_object(Path(run_dir) / SIGNALS_FILE)
    if data is None:
        return None
    app_id = data.get("app_id") if isinstance(data.get("app_id"), str) else None
    ui_url = data.get("ui_url") if isinstance(data.get("ui_url"), str) else None
    ready_at = number(data.get("ready_at"))
    stopped_at = number(data.get("stopped_at"))
    return DriverSignals(
        app_id=app_id,
        ui_url=ui_url,
        ui_port=_port(ui_url),
        ready=ready_at is not None,
        stopped=stopped_at is not None,
        ready_at=ready_at,
        stopped_at=stopped_at,
    )
