"""Job state changes on Jupyter's event bus (jupyter_events), so that `/api/events/subscribe`
and other extensions see DataHarbour jobs too."""

from pathlib import Path

from .events import Event, EventHub

JOB_STATE_SCHEMA_ID = "https://events.dataharbour.dev/dataharbour_ext/job_state/v1"
SCHEMA_FILE = Path(__file__).parent / "event_schemas" / "job_state" / "v1.yaml"

ENDED = frozenset({"succeeded", "failed", "killed", "lost", "deleted"})


def job_state_event(event: Event) -> dict | None:
    """What the bus gets for a hub event: identifiers, name and state, nothing secret."""
    if event.type == "job_deleted":
        return {"job_id": event.data["id"], "state": "deleted"}
    if event.type != "job_update":
        return None
    job = event.data
    return {"job_id": job["id"], "name": job["name"], "cluster_id": job["cluster_id"], "attempt": job["attempt"],
            "state": job["state"], "exit_code": job.get("exit_code")}


def connect_event_bus(hub: EventHub, event_logger) -> None:
    """Register the schema on the server's event logger and forward every job state change."""
    event_logger.register_event_schema(SCHEMA_FILE)
    last_state: dict[str, str] = {}

    def forward(event: Event) -> None:
        data = job_state_event(event)
        if data is None:
            return
        key = f"{data.get('attempt')}:{data['state']}"
        if last_state.get(data["job_id"]) == key:
            return  # an update that changed no state
        if data["state"] in ENDED:
            last_state.pop(data["job_id"], None)  # remembered only while a job is active
        else:
            last_state[data["job_id"]] = key
        event_logger.emit(schema_id=JOB_STATE_SCHEMA_ID, data=data)

    hub.subscribe(forward)
