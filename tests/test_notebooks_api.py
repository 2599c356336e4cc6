"""The notebooks API: real .ipynb files through Jupyter's contents manager, ids from Jupyter's
File ID service, seen through Jupyter's own /api/contents."""

import asyncio
import dataclasses
import json
import uuid
from urllib.parse import quote

import nbformat
import pytest
from jupyter_server.auth import Authorizer

from dataharbour_ext.services.notebook_execution import CellRun


class Contents:
    """Jupyter's own contents API, to see what the notebooks API did."""

    def __init__(self, fetch):
        self.fetch = fetch

    async def call(self, method, path, body=None, **params):
        kwargs = {"method": method, "raise_error": False, "params": params}
        if body is not None:
            kwargs["body"] = json.dumps(body)
        response = await self.fetch("api", "contents", *[part for part in path.split("/") if part], **kwargs)
        try:
            return response.code, json.loads(response.body) if response.body else None
        except ValueError:  # some of its errors are plain text
            return response.code, response.body.decode()

    async def notebook(self, path):
        status, model = await self.call("GET", path, type="notebook")
        assert status == 200, model
        return model["content"]

    async def put_notebook(self, path, content):
        status, model = await self.call("PUT", path, {"type": "notebook", "format": "json", "content": content})
        assert status in (200, 201), model


@pytest.fixture
def contents(jp_fetch):
    return Contents(jp_fetch)


async def create(api, **body):
    status, notebook = await api.call("POST", "notebooks/", body)
    assert status == 201, notebook
    return notebook


def legacy_notebook(*sources):
    """An nbformat 4.4 notebook: its cells have no ids."""
    cells = [
        {"cell_type": "code", "source": source, "metadata": {}, "outputs": [], "execution_count": None}
        for source in sources
    ]
    return {"nbformat": 4, "nbformat_minor": 4, "metadata": {}, "cells": cells}


def notebook_with_output():
    notebook = nbformat.v4.new_notebook()
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    notebook.cells = [
        nbformat.v4.new_markdown_cell("# Sales"),
        nbformat.v4.new_code_cell(
            "total = 40 + 2\nprint(total)",
            execution_count=1,
            outputs=[nbformat.v4.new_output("stream", name="stdout", text="42\n")],
        ),
    ]
    return json.loads(nbformat.writes(notebook))


def multipart(filename, data: bytes, **fields):
    boundary = uuid.uuid4().hex
    parts = []
    for name, value in fields.items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode())
    parts.append(
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
        f"Content-Type: application/octet-stream\r\n\r\n".encode()
        + data
        + b"\r\n"
    )
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), {"Content-Type": f"multipart/form-data; boundary={boundary}"}


async def upload(jp_fetch, filename, data, **fields):
    body, headers = multipart(filename, data, **fields)
    response = await jp_fetch(
        "api", "v1", "notebooks", "import", method="POST", body=body, headers=headers, raise_error=False
    )
    return response.code, json.loads(response.body)


async def export(jp_fetch, notebook_id, file_format):
    response = await jp_fetch(
        "api", "v1", "notebooks", notebook_id, "export", params={"format": file_format}, raise_error=False
    )
    return response


# ---- create, read, list ------------------------------------------------------------------


async def test_create_makes_a_real_notebook_jupyter_sees(api, contents, jp_base_url):
    notebook = await create(api, name="My First Notebook", description="Learning PySpark")
    assert notebook["name"] == notebook["path"] == "My First Notebook.ipynb"
    assert notebook["description"] == "Learning PySpark" and notebook["kernel_name"] == "python3"
    assert notebook["cell_count"] == 0 and notebook["cells"] == [] and notebook["created_at"]
    stored = await contents.notebook("My First Notebook.ipynb")
    assert stored["metadata"]["dataharbour"] == {"description": "Learning PySpark"}
    assert stored["metadata"]["kernelspec"]["name"] == "python3"
    assert stored["metadata"]["kernelspec"]["display_name"]  # JupyterLab opens it with its kernel, unasked
    status, fetched = await api.call("GET", f"notebooks/{notebook['id']}")
    assert status == 200 and fetched["id"] == notebook["id"] and fetched["description"] == "Learning PySpark"
    assert fetched["nbformat"] == 4 and fetched["nbformat_minor"] == 5


async def test_create_in_a_folder_with_a_kernel(api, contents, jp_root_dir):
    (jp_root_dir / "team").mkdir()
    notebook = await create(api, name="etl.ipynb", folder="/team/", kernel_name="echo")
    assert notebook["path"] == "team/etl.ipynb" and notebook["kernel_name"] == "echo"
    assert (await contents.notebook("team/etl.ipynb"))["metadata"]["kernelspec"]["name"] == "echo"


async def test_create_refuses_what_exists_or_is_wrong_and_changes_nothing(api, contents, jp_root_dir):
    first = await create(api, name="report", description="keep me")
    status, error = await api.call("POST", "notebooks/", {"name": "report.ipynb", "description": "overwrite"})
    assert status == 409 and "already exists" in error["message"], error
    assert (await contents.notebook("report.ipynb"))["metadata"]["dataharbour"]["description"] == "keep me"
    (jp_root_dir / "data").mkdir()
    for body, field in [
        ({"name": ""}, "name"),
        ({"name": "a/b"}, "name"),
        ({"name": "x", "folder": "missing"}, "folder"),
        ({"name": "x", "folder": "../outside"}, "folder"),
        ({"name": ".hidden"}, "name"),
        ({"name": "x", "kernel_name": "no-such-kernel"}, "kernel_name"),
        ({"name": "x", "colour": "red"}, "colour"),
    ]:
        status, error = await api.call("POST", "notebooks/", body)
        assert status == 400 and error["message"].startswith(f"{field}:"), (body, error)
    status, error = await api.call("POST", "notebooks/", {"name": "data"})  # data.ipynb: free, the folder is "data"
    assert status == 201
    status, listing = await api.call("GET", "notebooks/")
    assert [item["path"] for item in listing["notebooks"]] == ["data.ipynb", "report.ipynb"]
    assert listing["notebooks"][1]["id"] == first["id"]


async def test_list_pages_walks_folders_and_leaves_hidden_files_out(api, jp_root_dir):
    (jp_root_dir / "team" / "sub").mkdir(parents=True)
    (jp_root_dir / ".secret").mkdir()
    for name in ["b", "a", "c"]:
        await create(api, name=name)
    await create(api, name="t", folder="team", description="team notebook")
    await create(api, name="deep", folder="team/sub")
    (jp_root_dir / ".hidden.ipynb").write_text(nbformat.writes(nbformat.v4.new_notebook()))
    (jp_root_dir / ".secret" / "s.ipynb").write_text(nbformat.writes(nbformat.v4.new_notebook()))
    (jp_root_dir / "notes.txt").write_text("not a notebook")
    (jp_root_dir / "broken.ipynb").write_text("{not json")

    status, listing = await api.call("GET", "notebooks/")
    assert status == 200
    assert [n["path"] for n in listing["notebooks"]] == ["a.ipynb", "b.ipynb", "broken.ipynb", "c.ipynb"]
    assert listing["total"] == 4 and listing["truncated"] is False
    broken = listing["notebooks"][2]
    assert broken["cell_count"] is None and broken["id"]  # listed as the file browser lists it, unreadable
    assert listing["notebooks"][0]["cell_count"] == 0 and listing["notebooks"][0]["kernel_name"] == "python3"

    status, listing = await api.call("GET", "notebooks/", params={"recursive": "true", "limit": 2, "offset": 3})
    assert status == 200 and listing["total"] == 6 and listing["limit"] == 2 and listing["offset"] == 3
    assert [n["path"] for n in listing["notebooks"]] == ["c.ipynb", "team/sub/deep.ipynb"]

    status, listing = await api.call("GET", "notebooks/", params={"folder": "team"})
    assert [(n["path"], n["description"]) for n in listing["notebooks"]] == [("team/t.ipynb", "team notebook")]
    status, error = await api.call("GET", f"notebooks/{broken['id']}")
    assert status == 400 and "Unreadable Notebook" in error["message"], error
    status, error = await api.call("GET", "notebooks/", params={"folder": "nowhere"})
    assert status == 404, error
    status, error = await api.call("GET", "notebooks/", params={"folder": ".secret"})
    assert status == 404, error
    status, error = await api.call("GET", "notebooks/", params={"limit": 0})
    assert status == 400 and error["message"].startswith("limit:"), error


@pytest.mark.parametrize("dataharbour_config", [{"notebook_scan_limit": 3}])
async def test_a_listing_stops_at_the_scan_limit_and_says_so(api):
    for name in ["a", "b", "c", "d", "e"]:
        await create(api, name=name)
    status, listing = await api.call("GET", "notebooks/")
    assert status == 200 and listing["truncated"] is True and listing["total"] == 3


# ---- ids follow the file ---------------------------------------------------------------------


async def test_an_id_survives_a_rename_and_a_move_through_jupyters_contents_api(api, contents, jp_root_dir):
    notebook = await create(api, name="draft", description="v1")
    status, _ = await contents.call("PATCH", "draft.ipynb", {"path": "final.ipynb"})
    assert status == 200
    status, renamed = await api.call("GET", f"notebooks/{notebook['id']}")
    assert status == 200 and renamed["path"] == "final.ipynb" and renamed["description"] == "v1"
    (jp_root_dir / "archive").mkdir()
    status, _ = await contents.call("PATCH", "final.ipynb", {"path": "archive/final.ipynb"})
    assert status == 200
    status, moved = await api.call("GET", f"notebooks/{notebook['id']}")
    assert status == 200 and moved["path"] == "archive/final.ipynb" and moved["name"] == "final.ipynb"
    status, listing = await api.call("GET", "notebooks/", params={"folder": "archive"})
    assert [n["id"] for n in listing["notebooks"]] == [notebook["id"]]


async def test_a_notebook_made_in_jupyter_gets_an_id_that_lasts(api, contents):
    await contents.put_notebook("lab.ipynb", notebook_with_output())
    _, listing = await api.call("GET", "notebooks/")
    (item,) = listing["notebooks"]
    assert item["cell_count"] == 2 and item["kernel_name"] == "python3"
    _, again = await api.call("GET", "notebooks/")
    assert again["notebooks"][0]["id"] == item["id"]
    status, fetched = await api.call("GET", f"notebooks/{item['id']}")
    code = fetched["cells"][1]
    assert status == 200 and code["source"] == "total = 40 + 2\nprint(total)" and code["execution_count"] == 1
    assert code["outputs"] == [{"output_type": "stream", "name": "stdout", "text": "42\n"}]
    assert "trusted" not in code["metadata"]  # the contents manager's mark, not in the file


def every_route(notebook_id):
    return [
        ("GET", f"notebooks/{notebook_id}", None),
        ("PUT", f"notebooks/{notebook_id}", {"description": "x"}),
        ("DELETE", f"notebooks/{notebook_id}", None),
        ("POST", f"notebooks/{notebook_id}/cells", {"source": "1"}),
        ("DELETE", f"notebooks/{notebook_id}/cells/abc", None),
        ("DELETE", f"notebooks/{notebook_id}/cells/cell-0", None),
        ("POST", f"notebooks/{notebook_id}/cells/abc/execute", {}),
        ("POST", f"notebooks/{notebook_id}/cells/cell-0/execute", {}),
        ("GET", f"notebooks/{notebook_id}/export", None),
    ]


async def test_unknown_ids_are_404_everywhere(api, contents, jp_root_dir, extension):
    file_ids = extension.serverapp.web_app.settings["file_id_manager"]
    (jp_root_dir / "folder.ipynb").mkdir()  # a folder named like a notebook has an id too, but is none
    folder_id = file_ids.index("folder.ipynb")
    await contents.put_notebook("gone.ipynb", notebook_with_output())
    _, listing = await api.call("GET", "notebooks/")
    gone_id = listing["notebooks"][0]["id"]
    (jp_root_dir / "gone.ipynb").unlink()  # deleted behind Jupyter's back
    for notebook_id in ["nope", str(uuid.uuid4()), gone_id, folder_id]:
        for method, path, body in every_route(notebook_id):
            status, error = await api.call(method, path, body)
            assert status == 404 and notebook_id in error["message"], (method, path, error)
    assert (jp_root_dir / "folder.ipynb").is_dir()


async def test_hidden_notebooks_are_404_everywhere(api, jp_root_dir, extension):
    (jp_root_dir / ".hidden.ipynb").write_text(json.dumps(legacy_notebook("1")))
    hidden_id = extension.serverapp.web_app.settings["file_id_manager"].index(".hidden.ipynb")
    assert hidden_id
    for method, path, body in every_route(hidden_id):
        status, error = await api.call(method, path, body)
        assert status == 404, (method, path, error)
    assert json.loads((jp_root_dir / ".hidden.ipynb").read_text()) == legacy_notebook("1")


async def test_malformed_files_are_listed_and_refused_with_a_reason(api, jp_root_dir):
    odd_kernel = legacy_notebook("1")
    odd_kernel["metadata"] = {"kernelspec": {"name": 3, "display_name": "three"}}
    (jp_root_dir / "a-odd-kernel.ipynb").write_text(json.dumps(odd_kernel))
    bad_cells = {
        "b-sql.ipynb": ("cell_type", "sql", "cells[0]['cell_type']"),
        "c-count.ipynb": ("execution_count", "three", "cells[0]['execution_count']"),
    }
    for name, (key, value, _) in bad_cells.items():
        document = legacy_notebook("1")
        document["cells"][0][key] = value
        (jp_root_dir / name).write_text(json.dumps(document))
    status, listing = await api.call("GET", "notebooks/")
    assert status == 200, listing
    summaries = {n["path"]: n for n in listing["notebooks"]}
    assert list(summaries) == ["a-odd-kernel.ipynb", "b-sql.ipynb", "c-count.ipynb"]
    assert summaries["a-odd-kernel.ipynb"]["kernel_name"] is None and summaries["a-odd-kernel.ipynb"]["cell_count"] == 1
    status, fetched = await api.call("GET", f"notebooks/{summaries['a-odd-kernel.ipynb']['id']}")
    assert status == 200 and fetched["kernel_name"] is None, fetched

    for name, (_, _, place) in bad_cells.items():
        notebook_id = summaries[name]["id"]
        before = (jp_root_dir / name).read_text()
        status, error = await api.call("GET", f"notebooks/{notebook_id}")
        assert status == 400 and error["message"].startswith(f"not a valid notebook: {place}"), error
        for body in [{"name": "renamed"}, {"description": "x"}]:  # refused before anything is written
            status, error = await api.call("PUT", f"notebooks/{notebook_id}", body)
            assert status == 400 and "not a valid notebook" in error["message"], (body, error)
        assert (jp_root_dir / name).read_text() == before and not (jp_root_dir / "renamed.ipynb").exists()


async def test_large_notebooks_are_listed_without_being_read(api, extension, jp_root_dir):
    notebooks = extension.settings["dataharbour"]["notebooks"]
    notebooks.config = dataclasses.replace(notebooks.config, summary_max_bytes=2000)
    small = await create(api, name="small", description="read")
    document = notebook_with_output()
    document["cells"][0]["source"] = "x" * 3000
    (jp_root_dir / "large.ipynb").write_text(json.dumps(document))
    _, listing = await api.call("GET", "notebooks/")
    large, listed_small = listing["notebooks"]
    assert large["path"] == "large.ipynb" and large["cell_count"] is None and large["id"]
    assert listed_small["id"] == small["id"] and listed_small["description"] == "read"
    status, fetched = await api.call("GET", f"notebooks/{large['id']}")
    assert status == 200 and fetched["cell_count"] == 2


# ---- change, delete ------------------------------------------------------------------------


async def test_update_renames_replaces_cells_and_merges_metadata(api, contents):
    notebook = await create(api, name="old", description="first")
    cells = [
        {"cell_type": "markdown", "source": "# Title", "id": "intro"},
        {
            "cell_type": "code",
            "source": ["x = 1\n", "x"],
            "outputs": [
                {"output_type": "execute_result", "execution_count": 3, "data": {"text/plain": "1"}, "metadata": {}}
            ],
            "execution_count": 3,
        },
        {"cell_type": "raw", "source": "raw text"},
    ]
    status, updated = await api.call(
        "PUT",
        f"notebooks/{notebook['id']}",
        {
            "name": "new",
            "cells": cells,
            "metadata": {"tags": ["etl"], "language_info": None},
        },
    )
    assert status == 200, updated
    assert updated["id"] == notebook["id"] and updated["path"] == "new.ipynb" and updated["description"] == "first"
    assert [(c["id"], c["cell_type"]) for c in updated["cells"]][:2] == [
        ("intro", "markdown"),
        (updated["cells"][1]["id"], "code"),
    ]
    assert updated["cells"][1]["source"] == "x = 1\nx" and updated["cells"][1]["execution_count"] == 3
    assert updated["metadata"]["tags"] == ["etl"] and "language_info" not in updated["metadata"]
    assert updated["metadata"]["kernelspec"]["name"] == "python3"  # untouched keys stay
    assert (await contents.call("GET", "old.ipynb"))[0] == 404
    stored = await contents.notebook("new.ipynb")
    assert [cell["id"] for cell in stored["cells"]] == [c["id"] for c in updated["cells"]]
    assert stored["cells"][1]["outputs"][0]["data"] == {"text/plain": "1"}

    status, updated = await api.call("PUT", f"notebooks/{notebook['id']}", {"description": None, "kernel_name": "echo"})
    assert status == 200 and updated["description"] is None and updated["kernel_name"] == "echo"
    assert updated["cell_count"] == 3 and updated["path"] == "new.ipynb"
    assert "dataharbour" not in (await contents.notebook("new.ipynb"))["metadata"]


async def test_a_rename_moves_the_notebooks_jupyter_sessions(api, jp_fetch):
    notebook = await create(api, name="open", kernel_name="echo")
    model = {"path": "open.ipynb", "name": "open.ipynb", "type": "notebook", "kernel": {"name": "echo"}}
    response = await jp_fetch("api", "sessions", method="POST", body=json.dumps(model))
    session = json.loads(response.body)
    try:
        status, renamed = await api.call("PUT", f"notebooks/{notebook['id']}", {"name": "moved"})
        assert status == 200 and renamed["path"] == "moved.ipynb", renamed
        sessions = json.loads((await jp_fetch("api", "sessions")).body)
        assert [(s["id"], s["path"], s["name"]) for s in sessions] == [(session["id"], "moved.ipynb", "moved.ipynb")]
    finally:
        await jp_fetch("api", "sessions", session["id"], method="DELETE")


async def test_bad_updates_are_refused_and_change_nothing(api, contents, jp_root_dir):
    notebook = await create(api, name="keep", description="safe")
    await create(api, name="taken")
    before = (jp_root_dir / "keep.ipynb").read_text()
    bad = [
        ({}, 400, "nothing to change"),
        ({"name": "taken", "description": "lost?"}, 409, "already exists"),
        ({"folder": "missing"}, 400, "folder:"),
        (
            {"cells": [{"cell_type": "code", "source": "1", "outputs": [{"output_type": "bogus"}]}]},
            400,
            "cells[0]['outputs'][0]: not a valid notebook",
        ),
        ({"cells": [{"cell_type": "markdown", "source": "a", "outputs": []}]}, 400, "cells[0]"),
        ({"cells": [{"cell_type": "code", "id": "same"}, {"cell_type": "code", "id": "same"}]}, 400, "cells[1]['id']"),
        ({"cells": [{"cell_type": "code", "id": "not an id!"}]}, 400, "cells[0]['id']"),
        ({"cells": [{"cell_type": "sql"}]}, 400, "cells[0]['cell_type']"),
        ({"kernel_name": "no-such-kernel", "description": "lost?"}, 400, "kernel_name"),
        ({"metadata": "not an object"}, 400, "metadata"),
    ]
    for body, status, words in bad:
        got, error = await api.call("PUT", f"notebooks/{notebook['id']}", body)
        assert got == status and words in error["message"], (body, error)
    assert (jp_root_dir / "keep.ipynb").read_text() == before
    status, error = await api.call("PUT", f"notebooks/{notebook['id']}", raw_body="{broken")
    assert status == 400 and "not valid JSON" in error["message"]


async def test_delete_removes_the_file_and_the_id(api, contents):
    notebook = await create(api, name="temporary")
    status, _ = await api.call("DELETE", f"notebooks/{notebook['id']}")
    assert status == 204
    assert (await contents.call("GET", "temporary.ipynb"))[0] == 404
    status, error = await api.call("GET", f"notebooks/{notebook['id']}")
    assert status == 404, error
    status, _ = await api.call("DELETE", f"notebooks/{notebook['id']}")
    assert status == 404


# ---- cells -------------------------------------------------------------------------------


async def test_cells_are_added_where_asked_and_deleted_by_id(api, contents):
    notebook = await create(api, name="cells")
    url = f"notebooks/{notebook['id']}/cells"
    status, first = await api.call("POST", url, {"source": "print('first')"})
    assert status == 201 and first["cell_type"] == "code" and first["id"] and first["outputs"] == []
    status, title = await api.call("POST", url, {"cell_type": "markdown", "source": "# Top", "position": 0})
    assert status == 201 and title["cell_type"] == "markdown"
    status, last = await api.call("POST", url, {"cell_type": "raw", "source": "end", "position": 2})
    assert status == 201
    stored = await contents.notebook("cells.ipynb")
    assert [(c["id"], c["source"]) for c in stored["cells"]] == [
        (title["id"], "# Top"),
        (first["id"], "print('first')"),
        (last["id"], "end"),
    ]

    status, _ = await api.call("DELETE", f"{url}/{first['id']}")
    assert status == 204
    status, fetched = await api.call("GET", f"notebooks/{notebook['id']}")
    assert [c["id"] for c in fetched["cells"]] == [title["id"], last["id"]] and fetched["cell_count"] == 2

    status, error = await api.call("DELETE", f"{url}/{first['id']}")
    assert status == 404 and first["id"] in error["message"]
    for body, field in [
        ({"position": 3}, "position"),
        ({"position": -1}, "position"),
        ({"cell_type": "sql"}, "cell_type"),
        ({"source": 5}, "source"),
    ]:
        status, error = await api.call("POST", url, body)
        assert status == 400 and error["message"].startswith(f"{field}:"), (body, error)
    assert len((await contents.notebook("cells.ipynb"))["cells"]) == 2


async def test_concurrent_changes_to_one_notebook_all_land(api, contents):
    notebook = await create(api, name="busy")
    url = f"notebooks/{notebook['id']}/cells"
    answers = await asyncio.gather(*(api.call("POST", url, {"source": f"step = {n}"}) for n in range(6)))
    assert [status for status, _ in answers] == [201] * 6
    stored = await contents.notebook("busy.ipynb")
    assert sorted(cell["source"] for cell in stored["cells"]) == [f"step = {n}" for n in range(6)]
    assert len({cell["id"] for cell in stored["cells"]}) == 6


async def test_cells_of_a_notebook_without_ids_get_the_ids_they_were_shown_with(api, contents, jp_root_dir):
    (jp_root_dir / "old.ipynb").write_text(json.dumps(legacy_notebook("a = 1", "b = 2", "c = 3")))
    _, listing = await api.call("GET", "notebooks/")
    notebook_id = listing["notebooks"][0]["id"]
    status, fetched = await api.call("GET", f"notebooks/{notebook_id}")
    assert [c["id"] for c in fetched["cells"]] == ["cell-0", "cell-1", "cell-2"] and fetched["nbformat_minor"] == 4
    status, _ = await api.call("DELETE", f"notebooks/{notebook_id}/cells/cell-1")
    assert status == 204
    stored = json.loads((jp_root_dir / "old.ipynb").read_text())
    assert stored["nbformat_minor"] == 5
    assert [(c["id"], "".join(c["source"])) for c in stored["cells"]] == [("cell-0", "a = 1"), ("cell-2", "c = 3")]


# ---- import, export ------------------------------------------------------------------------


async def test_import_an_ipynb_as_json_and_export_it_back(api, contents, jp_fetch):
    document = notebook_with_output()
    status, imported = await api.call("POST", "notebooks/import", {"name": "sales", "content": document})
    assert status == 201, imported
    assert imported["path"] == "sales.ipynb" and imported["cell_count"] == 2 and imported["kernel_name"] == "python3"
    stored = await contents.notebook("sales.ipynb")
    assert [c["source"] for c in stored["cells"]] == ["# Sales", "total = 40 + 2\nprint(total)"]

    response = await export(jp_fetch, imported["id"], "ipynb")
    assert response.code == 200 and response.headers["Content-Type"] == "application/x-ipynb+json"
    assert response.headers["Content-Disposition"].startswith('attachment; filename="sales.ipynb"')
    exported = json.loads(response.body)
    assert ["".join(c["source"]) for c in exported["cells"]] == ["# Sales", "total = 40 + 2\nprint(total)"]
    assert "".join(exported["cells"][1]["outputs"][0]["text"]) == "42\n"
    assert "trusted" not in exported["cells"][1]["metadata"]

    status, again = await api.call("POST", "notebooks/import", {"content": response.body.decode()})
    assert status == 201 and again["path"] == "Imported.ipynb" and again["cell_count"] == 2
    status, third = await api.call("POST", "notebooks/import", {"content": document})
    assert status == 201 and third["path"] == "Imported-1.ipynb"


async def test_import_upgrades_an_nbformat_3_notebook(api, contents):
    v3 = {
        "nbformat": 3,
        "nbformat_minor": 0,
        "metadata": {"name": "old"},
        "worksheets": [
            {
                "cells": [
                    {
                        "cell_type": "code",
                        "input": "print('v3')",
                        "outputs": [],
                        "language": "python",
                        "collapsed": False,
                    }
                ]
            }
        ],
    }
    status, imported = await api.call("POST", "notebooks/import", {"name": "legacy", "content": v3})
    assert status == 201 and imported["cell_count"] == 1, imported
    stored = await contents.notebook("legacy.ipynb")
    assert stored["nbformat"] == 4 and stored["cells"][0]["source"] == "print('v3')"


async def test_import_refuses_invalid_documents_with_nbformats_reason(api, jp_root_dir):
    broken = notebook_with_output()
    broken["cells"][0]["cell_type"] = "sql"
    for body, words in [
        ({"name": "bad", "content": broken}, "not a valid notebook"),
        ({"name": "bad", "content": "{not json"}, "not JSON"),
        ({"name": "bad", "content": {"cells": "none"}}, "with an `nbformat` version"),
        ({"name": "bad", "content": [1, 2]}, "content:"),
        (
            {"name": "bad", "content": {"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": 3}},
            "not a valid notebook",
        ),
        ({"name": "bad", "content": {"nbformat": 9, "cells": []}}, "nbformat 9 is not a version"),
        ({"name": "bad", "format": "py", "content": {"a": 1}}, "script as text"),
        ({"name": "bad", "format": "rb", "content": "x"}, "format:"),
        ({"name": "bad"}, "content: is required"),
    ]:
        status, error = await api.call("POST", "notebooks/import", body)
        assert status == 400 and words in error["message"], (body, error)
    assert not (jp_root_dir / "bad.ipynb").exists()
    await api.call("POST", "notebooks/import", {"name": "exists", "content": notebook_with_output()})
    status, error = await api.call("POST", "notebooks/import", {"name": "exists", "content": legacy_notebook("1")})
    assert status == 409, error
    assert len(json.loads((jp_root_dir / "exists.ipynb").read_text())["cells"]) == 2


async def test_import_refuses_text_utf8_cannot_encode_and_writes_nothing(api, jp_fetch, jp_root_dir):
    document = notebook_with_output()
    document["cells"][0]["source"] = "# \ud800"
    text = json.dumps(document)  # the lone surrogate as the escape \ud800: valid JSON text
    assert "\\ud800" in text
    status, error = await api.call("POST", "notebooks/import", {"name": "lone", "content": text})
    assert status == 400 and "cannot be encoded as UTF-8" in error["message"], error
    status, error = await upload(jp_fetch, "lone.ipynb", text.encode())
    assert status == 400 and "cannot be encoded as UTF-8" in error["message"], error
    assert not (jp_root_dir / "lone.ipynb").exists()
    status, imported = await api.call("POST", "notebooks/import", {"name": "lone", "content": notebook_with_output()})
    assert status == 201 and imported["path"] == "lone.ipynb", imported


async def test_py_export_and_import_round_trip_through_jupytext(api, jp_fetch, contents):
    notebook = await create(api, name="pipeline", description="nightly load")
    await api.call("POST", f"notebooks/{notebook['id']}/cells", {"cell_type": "markdown", "source": "# Load"})
    await api.call("POST", f"notebooks/{notebook['id']}/cells", {"source": "rows = 10\nprint(rows)"})
    response = await export(jp_fetch, notebook["id"], "py")
    assert response.code == 200 and response.headers["Content-Type"].startswith("text/x-python")
    assert 'filename="pipeline.py"' in response.headers["Content-Disposition"]
    script = response.body.decode()
    assert "# %% [markdown]\n# # Load" in script and "# %%\nrows = 10\nprint(rows)" in script

    status, imported = await api.call(
        "POST", "notebooks/import", {"name": "pipeline-copy", "format": "py", "content": script}
    )
    assert status == 201, imported
    assert imported["description"] == "nightly load" and imported["kernel_name"] == "python3"
    stored = await contents.notebook("pipeline-copy.ipynb")
    assert [(c["cell_type"], c["source"]) for c in stored["cells"]] == [
        ("markdown", "# Load"),
        ("code", "rows = 10\nprint(rows)"),
    ]
    assert "text_representation" not in stored["metadata"].get("jupytext", {})

    response = await export(jp_fetch, notebook["id"], "md")
    assert response.code == 200 and response.headers["Content-Type"].startswith("text/markdown")
    assert "```python\nrows = 10\nprint(rows)\n```" in response.body.decode()


async def test_html_export_shows_outputs(api, jp_fetch):
    _, imported = await api.call("POST", "notebooks/import", {"name": "Ventes été", "content": notebook_with_output()})
    response = await export(jp_fetch, imported["id"], "html")
    assert response.code == 200 and response.headers["Content-Type"] == "text/html; charset=utf-8"
    disposition = response.headers["Content-Disposition"]
    assert 'filename="Ventes _t_.html"' in disposition and f"filename*=UTF-8''{quote('Ventes été.html')}" in disposition
    html = response.body.decode()
    assert html.lstrip().lower().startswith("<!doctype html") and "42" in html and "Sales" in html
    response = await export(jp_fetch, imported["id"], "pdf")
    assert response.code == 400 and json.loads(response.body)["message"].startswith("format:")


async def test_multipart_uploads_of_ipynb_and_py(api, jp_fetch, contents, jp_root_dir):
    (jp_root_dir / "uploads").mkdir()
    status, imported = await upload(
        jp_fetch, "report.ipynb", json.dumps(notebook_with_output()).encode(), folder="uploads", _xsrf="from-a-form"
    )
    assert status == 201, imported
    assert imported["path"] == "uploads/report.ipynb" and imported["cell_count"] == 2
    script = b"# %%\nimport math\n\n# %% [markdown]\n# Done\n"
    status, imported = await upload(jp_fetch, "job.py", script, name="from script")
    assert status == 201 and imported["path"] == "from script.ipynb", imported
    stored = await contents.notebook("from script.ipynb")
    assert [(c["cell_type"], c["source"]) for c in stored["cells"]] == [("code", "import math"), ("markdown", "Done")]

    for filename, data, words in [
        ("notes.txt", b"hello", "file:"),
        ("bad.ipynb", b"\xff\xfe", "file: not UTF-8"),
        ("bad.ipynb", b'{"nbformat": 4, "nbformat_minor": 5, "cells": 3, "metadata": {}}', "not a valid notebook"),
    ]:
        status, error = await upload(jp_fetch, filename, data)
        assert status == 400 and words in error["message"], (filename, error)
    assert not (jp_root_dir / "bad.ipynb").exists()


def _server_config(**server_app) -> dict:
    """conftest's server config with other ServerApp settings."""
    return {
        "ServerApp": {
            "jpserver_extensions": {
                "dataharbour_ext": True,
                "jupyter_server_fileid": True,
                "jupyter_server_terminals": False,
            },
            "allow_unauthenticated_access": False,
            **server_app,
        },
        "BaseFileIdManager": {"db_path": ":memory:"},
        "DataHarbourApp": {"class_data_sharing": False, "metrics_interval": 0.0},
    }


# ---- execute -----------------------------------------------------------------------------


async def test_execute_without_an_executor_is_503(api, extension):
    notebook = await create(api, name="run")
    _, cell = await api.call("POST", f"notebooks/{notebook['id']}/cells", {"source": "1 + 1"})
    extension.settings["dataharbour"].pop("cell_executor", None)
    status, error = await api.call("POST", f"notebooks/{notebook['id']}/cells/{cell['id']}/execute", {})
    assert status == 503 and "not available" in error["message"], error


class RecordingExecutor:
    """Stands in for the cell executor (tested on a real kernel in test_notebook_execution.py):
    shows what the handler asks and how it answers."""

    def __init__(self):
        self.calls = []

    async def execute(self, notebook_id, path, cell_id, timeout):
        self.calls.append((notebook_id, path, cell_id, timeout))
        return CellRun(
            "ok",
            7,
            [{"output_type": "execute_result", "execution_count": 7, "data": {"text/plain": "2"}, "metadata": {}}],
        )


async def test_execute_resolves_the_notebook_and_answers_the_run(api, extension, jp_root_dir):
    executor = RecordingExecutor()
    extension.settings["dataharbour"]["cell_executor"] = executor
    (jp_root_dir / "legacy.ipynb").write_text(json.dumps(legacy_notebook("1 + 1")))
    _, listing = await api.call("GET", "notebooks/")
    notebook_id = listing["notebooks"][0]["id"]
    url = f"notebooks/{notebook_id}/cells/cell-0/execute"
    status, run = await api.call("POST", url, raw_body="")
    assert status == 200, run
    assert run == {
        "cell_id": "cell-0",
        "status": "ok",
        "execution_count": 7,
        "message": None,
        "outputs": [
            {"output_type": "execute_result", "execution_count": 7, "data": {"text/plain": "2"}, "metadata": {}}
        ],
    }
    # the shown id is written first, so that the executor finds the cell by it
    assert json.loads((jp_root_dir / "legacy.ipynb").read_text())["cells"][0]["id"] == "cell-0"
    status, _ = await api.call("POST", url, {"timeout": 2.5})
    assert status == 200 and executor.calls == [
        (notebook_id, "legacy.ipynb", "cell-0", None),
        (notebook_id, "legacy.ipynb", "cell-0", 2.5),
    ]
    for body in [{"timeout": 0}, {"timeout": 10**9}, {"timeout": "soon"}, {"wait": 1}]:
        status, error = await api.call("POST", url, body)
        assert status == 400, (body, error)
    status, error = await api.call("POST", f"notebooks/{uuid.uuid4()}/cells/cell-0/execute", {})
    assert status == 404 and len(executor.calls) == 2


# ---- authorization: reads are "read", changes "write", running a cell "execute" ----------


class ReadOnlyNotebooks(Authorizer):
    """Allows only "read" on DataHarbour resources (anything on Jupyter's own); records each ask."""

    asked: list[tuple[str, str, str]] = []

    def is_authorized(self, handler, user, action, resource):
        if not resource.startswith("dataharbour:"):
            return True
        self.asked.append((resource, handler.request.method, action))
        return action == "read"


@pytest.mark.parametrize(
    "jp_server_config",
    [_server_config(authorizer_class=ReadOnlyNotebooks)],
    ids=["read-only-user"],
)
async def test_a_read_only_user_reads_notebooks_but_changes_and_runs_nothing(api, contents):
    await contents.put_notebook("mine.ipynb", notebook_with_output())
    ReadOnlyNotebooks.asked.clear()
    status, listing = await api.call("GET", "notebooks/")
    assert status == 200
    notebook_id = listing["notebooks"][0]["id"]
    assert (await api.call("GET", f"notebooks/{notebook_id}"))[0] == 200
    assert (await api.call("GET", f"notebooks/{notebook_id}/export"))[0] == 200
    for method, path, body, action in [
        ("POST", "notebooks/", {"name": "x"}, "write"),
        ("POST", "notebooks/import", {"content": notebook_with_output()}, "write"),
        ("PUT", f"notebooks/{notebook_id}", {"description": "x"}, "write"),
        ("DELETE", f"notebooks/{notebook_id}", None, "write"),
        ("POST", f"notebooks/{notebook_id}/cells", {"source": "1"}, "write"),
        ("DELETE", f"notebooks/{notebook_id}/cells/abc", None, "write"),
        ("POST", f"notebooks/{notebook_id}/cells/abc/execute", {}, "execute"),
    ]:
        status, error = await api.call(method, path, body)
        assert status == 403 and f"authorized to {action} on" in error["message"], (method, path, error)
    assert {resource for resource, _, _ in ReadOnlyNotebooks.asked} == {"dataharbour:notebooks"}
    assert len((await contents.notebook("mine.ipynb"))["cells"]) == 2


# ---- a synchronous contents manager works the same ----------------------------------------


@pytest.mark.parametrize(
    "jp_server_config",
    [_server_config(contents_manager_class="jupyter_server.services.contents.filemanager.FileContentsManager")],
    ids=["sync-contents-manager"],
)
@pytest.mark.filterwarnings("ignore:The synchronous ContentsManager classes are deprecated:DeprecationWarning")
async def test_a_synchronous_contents_manager_works_the_same(api, contents, jp_serverapp, jp_fetch):
    assert not asyncio.iscoroutinefunction(jp_serverapp.contents_manager.get)
    notebook = await create(api, name="sync", description="plain")
    status, cell = await api.call("POST", f"notebooks/{notebook['id']}/cells", {"source": "1 + 1"})
    assert status == 201
    status, _ = await contents.call("PATCH", "sync.ipynb", {"path": "renamed.ipynb"})
    assert status == 200
    status, fetched = await api.call("GET", f"notebooks/{notebook['id']}")
    assert status == 200 and fetched["path"] == "renamed.ipynb" and [c["id"] for c in fetched["cells"]] == [cell["id"]]
    status, listing = await api.call("GET", "notebooks/")
    assert [n["id"] for n in listing["notebooks"]] == [notebook["id"]]
    assert (await export(jp_fetch, notebook["id"], "py")).code == 200
    status, _ = await api.call("DELETE", f"notebooks/{notebook['id']}")
    assert status == 204 and (await contents.call("GET", "renamed.ipynb"))[0] == 404
