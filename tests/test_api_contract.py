"""The OpenAPI document is whole and tells the truth about what the server sends."""

import pytest

from dataharbour_ext.handlers.routes import ERROR_MODEL, ROUTES
from dataharbour_ext.models import CONF_KEY_PATTERN, ENV_NAME_PATTERN, JobSubmit
from dataharbour_ext.openapi import build_document


@pytest.fixture(scope="module")
def document():
    return build_document(ROUTES, ERROR_MODEL)


def _refs(node, where="#"):
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield where, value
            else:
                yield from _refs(value, f"{where}/{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _refs(value, f"{where}/{index}")


def _resolve(document, ref):
    assert ref.startswith("#/"), ref
    node = document
    for part in ref[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def test_every_ref_resolves(document):
    refs = list(_refs(document))
    assert len(refs) > 20
    dangling = []
    for where, ref in refs:
        try:
            _resolve(document, ref)
        except (KeyError, AssertionError):
            dangling.append((where, ref))
    assert not dangling
    assert "JobSort" in document["components"]["schemas"]


def test_error_content_types_match_what_is_sent(document):
    for path, item in document["paths"].items():
        for method, operation in item.items():
            for status, response in operation["responses"].items():
                if int(status) < 400:
                    continue
                (content_type,) = response["content"]
                expected = "text/plain" if path.endswith("/proxy/{path}") else "application/json"
                assert content_type == expected, (path, method, status)


def test_every_operation_documents_403_with_its_action(document):
    execute = {("/api/v1/jobs/", "post"), ("/api/v1/jobs/{job_id}/kill", "post"),
               ("/api/v1/jobs/{job_id}/restart", "post"), ("/api/v1/jobs/{job_id}", "delete"),
               ("/api/v1/clusters/", "post"), ("/api/v1/clusters/{cluster_id}", "delete"),
               ("/api/v1/notebooks/{notebook_id}/cells/{cell_id}/execute", "post")}
    # Notebook changes are "write", as in Jupyter's contents API.
    write = {("/api/v1/notebooks/", "post"), ("/api/v1/notebooks/import", "post"),
             ("/api/v1/notebooks/{notebook_id}", "put"), ("/api/v1/notebooks/{notebook_id}", "delete"),
             ("/api/v1/notebooks/{notebook_id}/cells", "post"),
             ("/api/v1/notebooks/{notebook_id}/cells/{cell_id}", "delete"),
             # Storage: uploads and deletes change objects (a presigned PUT URL also asks `write`).
             ("/api/v1/storage/objects/{bucket}/{key}", "put"), ("/api/v1/storage/objects/{bucket}/{key}", "delete")}
    for path, item in document["paths"].items():
        for method, operation in item.items():
            description = operation["responses"]["403"]["description"]
            action = "execute" if (path, method) in execute else "write" if (path, method) in write else "read"
            assert f"action `{action}`" in description, (path, method, description)
    proxy = document["paths"]["/api/v1/jobs/{job_id}/spark-ui/proxy/{path}"]["get"]["responses"]
    assert "kill" in proxy["403"]["description"] and "504" in proxy


def test_job_submit_states_its_constraints(document):
    schema = document["components"]["schemas"]["JobSubmit"]
    assert "Exactly one of `code`" in schema["description"]
    assert [option["required"] for option in schema["oneOf"]] == [["code"], ["file"], ["notebook"]]
    props = schema["properties"]
    assert props["name"]["maxLength"] == 200 and props["name"]["minLength"] == 1
    assert props["conf"]["propertyNames"]["pattern"] == f"^{CONF_KEY_PATTERN.pattern}$"
    assert props["env"]["propertyNames"]["pattern"] == f"^{ENV_NAME_PATTERN.pattern}$"
    assert props["args"]["maxItems"] == 1000


@pytest.mark.parametrize("key", ["spark.a", "spark.a.b-c_d", "not.spark", "spark.", "spark.a\n"])
def test_conf_key_pattern_in_the_schema_agrees_with_validation(document, key):
    import re

    pattern = document["components"]["schemas"]["JobSubmit"]["properties"]["conf"]["propertyNames"]["pattern"]
    documented = re.search(pattern.replace("$", r"\Z"), key) is not None  # JSON Schema: `$` is the very end
    try:
        JobSubmit.model_validate({"name": "x", "code": "1", "conf": {key: "1"}})
        accepted = True
    except ValueError:
        accepted = False
    assert documented == accepted


def test_list_items_are_summaries_and_details_are_whole(document):
    schemas = document["components"]["schemas"]
    assert schemas["JobList"]["properties"]["jobs"]["items"]["$ref"].endswith("/JobSummary")
    assert not {"code", "runs"} & set(schemas["JobSummary"]["properties"])
    assert {"code", "runs"} <= set(schemas["Job"]["required"])


def test_query_enums_are_components(document):
    params = {p["name"]: p for p in document["paths"]["/api/v1/jobs/"]["get"]["parameters"]}
    assert params["sort"]["schema"]["$ref"] == "#/components/schemas/JobSort"
    assert "JobQuery" not in document["components"]["schemas"]  # a query string, not a body


async def test_served_document_is_the_built_one(api, document):
    status, served = await api.call("GET", "openapi.json")
    assert status == 200 and served == document


async def test_list_items_have_no_code_or_runs_and_details_have_both(api):
    job = await api.submit(name="contract", code="print(1)\n")
    status, listing = await api.call("GET", "jobs/")
    assert status == 200 and [item["id"] for item in listing["jobs"]] == [job["id"]]
    assert "code" not in listing["jobs"][0] and "runs" not in listing["jobs"][0]
    details = await api.job(job["id"])
    assert details["code"] == "print(1)\n" and details["runs"][0]["attempt"] == 1
    await api.wait(job["id"])
