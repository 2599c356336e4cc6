"""Large API answers serialized item by item are the same JSON as one dump."""

import json
from datetime import datetime, timezone

from pydantic import BaseModel

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
    assert json.loads(body) == json.loads(page.model_dump_json())  # the list comes last
    # Items are serialized as the list's declared type: no program text, no runs.
    assert all("code" not in item and "runs" not in item for item in json.loads(body)["jobs"])


def test_an_empty_list_and_text_utf8_cannot_encode():
    assert json.loads(model_json_item_by_item(JobList(jobs=[], total=0, limit=50, offset=0), "jobs"))["jobs"] == []
    page = JobList(jobs=[_job(1, name="\ud800")], total=1, limit=50, offset=0)
    body = model_json_item_by_item(page, "jobs")
    assert json.loads(body)["jobs"][0]["name"] == "\ud800 1"
    assert json.loads(model_json(page)) == json.loads(body)


class _Item(BaseModel):
    a: int


class _Document(BaseModel):
    metadata: dict
    cells: list[_Item]


def test_the_list_is_where_it_belongs_when_another_field_holds_its_name():
    # A notebook's metadata may hold the text '"cells": []' that the list's own field dumps as.
    body = model_json_item_by_item(_Document(metadata={"cells": []}, cells=[_Item(a=1)]), "cells")
    assert json.loads(body) == {"metadata": {"cells": []}, "cells": [{"a": 1}]}
