"""Large API answers serialized item by item are the same JSON as one dump."""

import json
from datetime import datetime, timezone

from dataharbour_ext.json_body import model_json, model_json_item_by_item
from dataharbour_ext.models import Job, JobList, JobState

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)


def _job(n: int, name: str = "job") -> Job:
    return Job(id=f"{n:032x}", name=f"{name} {n}", cluster_id="spark-cluster-default", state=JobState.succeeded,
               source="code", args=["a"], conf={"spark.x": "1"}, env={}, created_at=NOW, updated_at=NOW,
               attempt=1, code="print(1)", runs=[])


def test_a_list_serialized_item_by_item_equals_one_dump():
    page = JobList(jobs=[_job(n) for n in range(3)], total=10, limit=3, offset=0)
    body = model_json_item_by_item(page, "jobs")
    assert body == page.model_dump_json().encode()
    # Items are serialized as the list's declared type: no program text, no runs.
    assert all("code" not in item and "runs" not in item for item in json.loads(body)["jobs"])


def test_an_empty_list_and_text_utf8_cannot_encode():
    assert json.loads(model_json_item_by_item(JobList(jobs=[], total=0, limit=50, offset=0), "jobs"))["jobs"] == []
    page = JobList(jobs=[_job(1, name="\ud800")], total=1, limit=50, offset=0)
    body = model_json_item_by_item(page, "jobs")
    assert json.loads(body)["jobs"][0]["name"] == "\ud800 1"
    assert json.loads(model_json(page)) == json.loads(body)
