"""Reads the live driver UI's REST API (blocking; call it from a worker thread)."""

import json
import urllib.request

# The driver is on loopback: never route to it through an http_proxy from the environment.
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def application_id(ui_url: str, timeout: float = 2.0) -> str | None:
    """The application id the driver UI reports, e.g. `local-1700000000000`."""
    try:
        with _opener.open(f"{ui_url.rstrip('/')}/api/v1/applications", timeout=timeout) as response:
            apps = json.loads(response.read())
    except (OSError, ValueError):
        return None
    if isinstance(apps, list) and apps and isinstance(apps[0], dict) and isinstance(apps[0].get("id"), str):
        return apps[0]["id"]
    return None
