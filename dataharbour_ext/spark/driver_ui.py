"""Reads the live driver UI's REST API (blocking; call it from a worker thread)."""

import json
import urllib.request


def application_id(ui_url: str, timeout: float = 2.0) -> str | None:
    """The application id the driver UI reports, e.g. `local-1700000000000`."""
    try:
        with urllib.request.urlopen(f"{ui_url.rstrip('/')}/api/v1/applications", timeout=timeout) as response:
            apps = json.loads(response.read())
    except (OSError, ValueError):
        return None
    return apps[0].get("id") if apps else None
