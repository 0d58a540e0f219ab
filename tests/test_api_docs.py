"""The API's documentation holds: the OpenAPI document validates and has every route, and
every curl example in docs/api.md answers the status written under it."""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from litestar.routes import HTTPRoute
from ocpp.v16 import call
from openapi_spec_validator import validate

from chargeledger.core.http.app import DOCS_ASSETS, OPENAPI_PATH, create_app
from chargeledger.core.http.context import ApiContext
from chargeledger.core.http.keys import new_key
from tests.harness import running_server
from tests.test_http_api import ROLES, Api, api_settings, charge, station

API_MD = Path(__file__).resolve().parent.parent / "docs" / "api.md"


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    keys: dict[str, str] = {role: new_key() for role in ROLES}
    store = f"sqlite:///{tmp_path_factory.mktemp('docs') / 'docs.db'}"
    with running_server(api_settings(store, keys)) as server:
        yield Api(server, keys)


def documented_routes(api: Api) -> set[tuple[str, str]]:
    """(method, OpenAPI path) of every route the application serves, its docs excepted."""
    assert api.server.csms is not None
    app = create_app(ApiContext(api.server.csms), [])
    return {
        (method, re.sub(r"\{(\w+):\w+\}", r"{\1}", route.path))
        for route in app.routes
        if isinstance(route, HTTPRoute) and not route.path.startswith(OPENAPI_PATH)
        for handler in route.route_handlers
        for method in getattr(handler, "http_methods", ())
        if method != "OPTIONS"
    }


def openapi(api: Api) -> dict[str, Any]:
    document: dict[str, Any] = httpx.get(f"{api.base}{OPENAPI_PATH}/openapi.json").json()
    return document


def test_openapi_document_validates_and_has_every_route(api: Api) -> None:
    document = openapi(api)
    validate(document)
    assert document["openapi"].startswith("3.1")
    served = {
        (method.upper(), path)
        for path, item in document["paths"].items()
        for method in item
        if method in {"get", "put", "post", "delete", "patch"}
    }
    routes = documented_routes(api)
    assert len(routes) == 60
    assert served == routes
    commands = document["paths"]["/api/stations/{station_id}/calls/{action}"]["post"]
    assert {"404", "409", "422", "502", "503", "504"} <= set(commands["responses"])
    problem = commands["responses"]["502"]["content"]["application/problem+json"]
    assert problem["schema"] == {"$ref": "#/components/schemas/Problem"}
    assert document["paths"]["/health/live"]["get"]["security"] == [{}]
    assert document["security"] == [{"bearer": []}]


def test_interactive_docs_are_served(api: Api) -> None:
    page = httpx.get(f"{api.base}{OPENAPI_PATH}")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    # Everything it loads is ours (docs/console.md): no CDN, so it works without internet.
    loaded = re.findall(r"""(?:src|href)=["']([^"']+)""", page.text)
    assert {f"{DOCS_ASSETS}/swagger-ui-bundle.js", f"{DOCS_ASSETS}/swagger-ui.css"} <= set(loaded)
    for url in loaded:
        assert url.startswith(DOCS_ASSETS), url
        asset = httpx.get(f"{api.base}{url}")
        assert asset.status_code == 200 and len(asset.content) > 500, url
    assert '"openapi":"3.1' in page.text.replace(" ", "")


def curl_examples() -> list[tuple[str, int]]:
    """Each ``curl`` line of docs/api.md's ``sh`` blocks and the status under it."""
    examples = []
    for block in re.findall(r"```sh\n(.*?)```", API_MD.read_text(), re.S):
        lines = block.splitlines()
        for line, following in zip(lines, [*lines[1:], ""], strict=True):
            if line.startswith("curl "):
                expected = re.fullmatch(r"# → (\d{3})", following.strip())
                assert expected, f"no '# → STATUS' line under: {line}"
                examples.append((line, int(expected.group(1))))
    return examples


def _route_of(command: str) -> tuple[str, str]:
    method = re.search(r" -X (\w+)", command)
    url = re.search(r'"\$API(/[^"?]*)', command)
    assert url, command
    return (method.group(1) if method else "GET"), url.group(1)


def test_every_route_has_a_curl_example(api: Api) -> None:
    examples = [_route_of(command) for command, _ in curl_examples()]
    for method, template in documented_routes(api):
        pattern = re.escape(template).replace(r"\{", "{").replace(r"\}", "}")
        pattern = re.sub(r"\{\w+\}", "[^/]+", pattern)
        assert any(m == method and re.fullmatch(pattern, path) for m, path in examples), (
            method,
            template,
        )


def test_curl_examples_answer_their_documented_status(api: Api, tmp_path: Path) -> None:
    examples = curl_examples()
    env = {
        **os.environ,
        "API": api.base,
        **{f"{role.upper()}_KEY": key for role, key in api.keys.items()},
    }

    async def scenario() -> list[tuple[str, int, int]]:
        results = []
        async with station(api, "CP-1") as cp:
            await cp.call(
                call.StatusNotification(connector_id=1, error_code="NoError", status="Available")
            )
            await charge(cp, "04A2B3C4", 0, 7400)
            for command, expected in examples:
                # Status on the last line; an endless stream is cut after a second.
                extra = " --max-time 1" if " -N " in command else ""
                process = await asyncio.create_subprocess_exec(
                    "bash",
                    "-c",
                    f"{command}{extra} -w '\\n%{{http_code}}'",
                    cwd=tmp_path,
                    env=env,
                    stdout=asyncio.subprocess.PIPE,
                )
                out, _ = await process.communicate()
                results.append((command, expected, int(out.decode().splitlines()[-1])))
        return results

    results = asyncio.run(scenario())
    assert len(results) >= 30
    wrong = [(command, expected, got) for command, expected, got in results if got != expected]
    assert not wrong, wrong
    assert (tmp_path / "cdrs.csv").read_text().startswith("cursor,transaction_id,station")
