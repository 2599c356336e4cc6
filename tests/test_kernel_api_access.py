"""Kernels started by the server get DATAHARBOUR_URL and DATAHARBOUR_TOKEN: enough to call the
API from a notebook (the magics and the client), with nothing typed."""

import json

import pytest
from tornado.httpclient import AsyncHTTPClient


async def test_kernels_are_told_where_the_api_is_and_the_token_opens_it(api, extension, jp_http_port, jp_base_url):
    variables = extension.kernel_environment.variables()

    assert variables["DATAHARBOUR_URL"] == f"http://127.0.0.1:{jp_http_port}{jp_base_url}"
    response = await AsyncHTTPClient().fetch(
        variables["DATAHARBOUR_URL"] + "api/v1/jobs/",
        headers={"Authorization": f"token {variables['DATAHARBOUR_TOKEN']}"},
    )
    assert response.code == 200 and json.loads(response.body)["total"] == 0


@pytest.mark.parametrize("dataharbour_config", [{"kernel_api_access": False}])
async def test_kernels_get_no_api_access_when_turned_off(api, extension):
    assert "DATAHARBOUR_URL" not in extension.kernel_environment.variables()
