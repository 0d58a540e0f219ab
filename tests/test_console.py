"""The operator console in a real headless Chromium (Debian's ``chromium``, driven by
Playwright's Python API) against a running server, with ``ocpp`` charge points as the stations.

One server and one browser for the module. The stations run on an asyncio loop of their own
thread (Playwright's synchronous API owns the test's thread). Each test takes a screenshot of
the page it checks: into the test's temporary folder, or into ``docs/console/`` (the pictures
of docs/console.md) when ``CHARGELEDGER_SCREENSHOTS=docs``.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import httpx
import pytest
import websockets
from ocpp.routing import after, on
from ocpp.v16 import call, call_result
from ocpp.v16.enums import Action
from playwright.sync_api import (
    Browser,
    BrowserContext,
    Page,
    Playwright,
    Route,
    expect,
    sync_playwright,
)

from chargeledger.core.api import Caller
from chargeledger.core.console.pages import PAGES, ConsolePage, register
from chargeledger.core.console.routes import ROUTES as CONSOLE_ROUTES
from chargeledger.core.console.views import meter_curve, use_case_forms
from chargeledger.core.events import FrameLogged, Recorded
from chargeledger.core.http.keys import new_key
from chargeledger.core.usecases import USE_CASES
from chargeledger.projections import TransactionState
from tests.harness import running_server
from tests.polling import wait_for
from tests.test_e2e_v16 import Station
from tests.test_http_api import ROLES, Api, api_settings

CHROMIUM = "/usr/bin/chromium"
"""Debian's chromium: ``make test`` installs it when missing (Playwright cannot download
browsers here)."""
DOCS = Path(__file__).resolve().parent.parent / "docs"
SHOTS = DOCS / "console"
WAIT_MS = 15_000
ENERGY, POWER = "Energy.Active.Import.Register", "Power.Active.Import"

T = TypeVar("T")


# -- stations on a loop of their own -----------------------------------------------------------


class Obliging(Station):
    """The e2e test's obliging 1.6 charge point that also starts a transaction when the CSMS
    asks for a remote start: Preparing, StartTransaction, Charging, then meter values with
    energy and power."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.transactions: list[int] = []

    @on(Action.remote_start_transaction)
    def on_remote_start(self, id_tag: str, **rest: Any) -> Any:
        return call_result.RemoteStartTransaction(status="Accepted")

    @after(Action.remote_start_transaction)
    async def start_charging(self, id_tag: str, connector_id: int = 1, **rest: Any) -> None:
        await self.status(connector_id, "Preparing")
        started = await self.call(
            call.StartTransaction(
                connector_id=connector_id,
                id_tag=id_tag,
                meter_start=1000,
                timestamp="2026-11-21T10:00:00Z",
            )
        )
        self.transactions.append(started.transaction_id)
        await self.status(connector_id, "Charging")
        for minute, (energy, power) in enumerate([(1500, 7.2), (2700, 11.0), (3600, 6.5)]):
            stamp = f"2026-11-21T10:{10 * (minute + 1):02d}:00Z"
            await self.call(
                call.MeterValues(
                    connector_id=connector_id,
                    transaction_id=started.transaction_id,
                    meter_value=[
                        {
                            "timestamp": stamp,
                            "sampledValue": [
                                {"value": str(energy), "measurand": ENERGY, "unit": "Wh"},
                                {"value": str(power), "measurand": POWER, "unit": "kW"},
                            ],
                        }
                    ],
                )
            )

    async def status(self, connector_id: int, status: str) -> None:
        await self.call(
            call.StatusNotification(connector_id=connector_id, error_code="NoError", status=status)
        )


class Stations:
    """``ocpp`` charge points on an asyncio loop in a thread of their own."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.connected: dict[str, tuple[Obliging, Any, asyncio.Task[Any]]] = {}

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(30)

    def connect(self, name: str) -> Obliging:
        async def connect() -> Obliging:
            ws = await websockets.connect(
                f"{self.url}/{name}", subprotocols=[websockets.Subprotocol("ocpp1.6")]
            )
            cp = Obliging(name, ws)
            task = asyncio.create_task(cp.start())
            await cp.call(
                call.BootNotification(
                    charge_point_model="EVC5",
                    charge_point_vendor="Acme",
                    firmware_version="4.2.1",
                )
            )
            await cp.status(1, "Available")
            await cp.status(2, "Available")
            self.connected[name] = (cp, ws, task)
            return cp

        return self.run(connect())

    def close(self) -> None:
        async def close() -> None:
            for _, ws, task in self.connected.values():
                task.cancel()
                await ws.close()

        self.run(close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


# -- the server, the browser ---------------------------------------------------------------------


class Console(Api):
    """A running server with the console and the API, a key per role, and its stations."""

    def __init__(self, api: Api, stations: Stations) -> None:
        super().__init__(api.server, api.keys)
        self.stations = stations

    def page(self, browser: Browser, role: str, path: str) -> Page:
        """A new browser tab signed in with the ``role`` key, at ``path``, once the page's
        fragment is shown."""
        page = browser.new_page(viewport={"width": 1280, "height": 860})
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(self.base + "/console/stations")
        page.evaluate("key => sessionStorage.setItem('chargeledger.apiKey', key)", self.keys[role])
        page.goto(self.base + path)
        page.wait_for_selector("body[data-ready=true]", timeout=WAIT_MS)
        assert errors == []
        return page


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    keys = {role: new_key() for role in ROLES}
    store = f"sqlite:///{tmp_path_factory.mktemp('console') / 'console.db'}"
    with running_server(api_settings(store, keys), web=CONSOLE_ROUTES) as server:
        stations = Stations(server.url)
        try:
            yield Console(Api(server, keys), stations)
        finally:
            stations.close()


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    assert Path(CHROMIUM).exists(), (
        f"{CHROMIUM} is missing: `make test` installs Debian's chromium (apt-get install chromium)"
    )
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
    yield browser
    browser.close()


def screenshot(page: Page, name: str, tmp_path: Path, full_page: bool = True) -> None:
    """The page as docs/console/<name>.png (with CHARGELEDGER_SCREENSHOTS=docs) or in the
    test's folder."""
    folder = SHOTS if os.environ.get("CHARGELEDGER_SCREENSHOTS") == "docs" else tmp_path
    folder.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(folder / f"{name}.png"), full_page=full_page)
    assert (folder / f"{name}.png").stat().st_size > 10_000


def offline(context: BrowserContext) -> list[str]:
    """Cut the browser context's pages off from every host but loopback; the list fills with
    what they asked for elsewhere (and were refused)."""
    refused: list[str] = []

    def guard(route: Route) -> None:
        host = urlsplit(route.request.url).hostname or ""
        if host in ("127.0.0.1", "localhost", "::1") or route.request.url.startswith("data:"):
            route.continue_()
        else:
            refused.append(route.request.url)
            route.abort()

    context.route("**/*", guard)
    return refused


# -- the pages ------------------------------------------------------------------------------


def test_root_leads_to_the_console_and_fragments_need_a_key(console: Console) -> None:
    root = httpx.get(console.base + "/", follow_redirects=False)
    assert root.status_code == 302 and root.headers["location"] == "/console/stations"
    shell = httpx.get(console.base + "/console/stations")
    assert shell.status_code == 200 and 'data-page="stations"' in shell.text
    assert console.keys["read"] not in shell.text
    assert httpx.get(console.base + "/console/fragment/stations").status_code == 401
    assert httpx.get(console.base + "/console/nope").status_code == 404
    read = console.auth("read")
    fragment = httpx.get(console.base + "/console/fragment/stations", headers=read)
    assert fragment.status_code == 200 and fragment.headers["x-caller"] == "read (read)"
    missing = httpx.get(console.base + "/console/fragment/station?id=NOPE", headers=read)
    assert missing.status_code == 404 and "NOPE" in missing.json()["detail"]
    bad = httpx.get(console.base + "/console/fragment/transactions?since=yesterday", headers=read)
    assert bad.status_code == 400


def test_sign_in_and_out(console: Console, browser: Browser, tmp_path: Path) -> None:
    page = browser.new_page(viewport={"width": 1024, "height": 700})
    page.goto(console.base + "/")
    expect(page.locator("#login")).to_be_visible()
    screenshot(page, "login", tmp_path)
    page.fill("#key-input", "clk_not-a-key")
    page.click("#login button[type=submit]")
    expect(page.locator("#login-error")).to_contain_text("refused", timeout=WAIT_MS)
    page.fill("#key-input", console.keys["read"])
    page.click("#login button[type=submit]")
    expect(page.locator("#caller")).to_have_text("read (read)", timeout=WAIT_MS)
    assert page.evaluate("sessionStorage.getItem('chargeledger.apiKey')") == console.keys["read"]
    assert page.evaluate("localStorage.length") == 0
    page.click("#logout")
    expect(page.locator("#login")).to_be_visible()
    assert page.evaluate("sessionStorage.getItem('chargeledger.apiKey')") is None
    page.close()


def test_station_table_fills_and_follows_a_status_change(
    console: Console, browser: Browser, tmp_path: Path
) -> None:
    # Registered, never seen: rows of the table all the same.
    with httpx.Client(base_url=console.base, headers=console.auth("admin")) as http:

        def register(number: int) -> int:
            return http.put(
                f"/api/stations/DEPOT-{number:04d}/registration",
                json={"description": f"depot bay {number}"},
            ).status_code

        with ThreadPoolExecutor(16) as pool:
            assert set(pool.map(register, range(1, 301))) == {200}
    cp = console.stations.connect("CP-LIVE")
    page = console.page(browser, "read", "/console/stations")
    row = page.locator('.vrow[data-station="CP-LIVE"]')
    expect(row.locator(".connection")).to_have_text("connected", timeout=WAIT_MS)
    expect(row.locator(".connectors")).to_contain_text("1 Available")
    expect(row).to_contain_text("Acme / EVC5")
    expect(row).to_contain_text("4.2.1")
    expect(page.locator("#station-count")).to_contain_text("of 301")
    # Only the rows in view are in the page, however many stations there are.
    assert page.locator("#station-body .vrow").count() < 60
    page.locator("#station-body").evaluate("body => body.scrollTop = body.scrollHeight")
    expect(page.locator('.vrow[data-station="DEPOT-0300"]')).to_be_visible()
    page.locator("#station-body").evaluate("body => body.scrollTop = 0")
    # The station changes: the row follows, with no reload.
    page.evaluate("window.notReloaded = true")
    console.stations.run(cp.status(2, "Faulted"))
    expect(row.locator(".connectors")).to_contain_text("2 Faulted", timeout=WAIT_MS)
    assert page.evaluate("window.notReloaded") is True
    screenshot(page, "stations", tmp_path, full_page=False)
    # Filters and search work on what the stream keeps up to date.
    page.select_option("select[name=status]", "Faulted")
    expect(page.locator("#station-count")).to_have_text("1 of 301")
    page.select_option("select[name=status]", "")
    page.fill("input[name=q]", "depot-002")
    expect(page.locator("#station-count")).to_have_text("10 of 301")
    page.fill("input[name=q]", "")
    page.select_option("select[name=connected]", "true")
    expect(page.locator("#station-count")).to_contain_text("of 301")
    # A tablet held upright: the table fits its width (protocol and firmware give way).
    page.set_viewport_size({"width": 820, "height": 1180})
    table = page.locator("#station-table").bounding_box()
    assert table is not None and table["width"] <= 820
    expect(row.locator(".connectors")).to_be_visible()
    screenshot(page, "stations-tablet", tmp_path, full_page=False)
    page.close()


def _remote_start(console: Console, page: Page, station: str) -> None:
    form = page.locator('form.command[data-use-case="remote_start"]')
    form.locator("input[name=id_token]").fill("04A2B3C4")
    form.locator("input[name=connector_id]").fill("1")
    form.locator("button[type=submit]").click()
    expect(form.locator("output")).to_contain_text("The station answered Accepted", timeout=WAIT_MS)


def test_remote_start_from_the_command_panel(
    console: Console, browser: Browser, tmp_path: Path
) -> None:
    cp = console.stations.connect("CP-START")
    page = console.page(browser, "operator", "/console/station?id=CP-START")
    expect(page.locator("#station-state h1")).to_contain_text("connected")
    # A form per use case of the table the operator may run.
    operator_cases = [u.name for u in USE_CASES.values() if u.role == "operator"]
    assert page.locator("form.command").count() == len(operator_cases)
    _remote_start(console, page, "CP-START")
    wait_for(lambda: cp.transactions, what="the station started a transaction")
    (transaction_id,) = cp.transactions
    # The station page follows: the transaction and the frames show up.
    transactions = page.locator("#station-state table.transactions")
    expect(transactions).to_contain_text(str(transaction_id), timeout=WAIT_MS)
    expect(page.locator("#station-frames")).to_contain_text("RemoteStartTransaction")
    expect(page.locator("#station-frames")).to_contain_text("04A2B3C4")
    screenshot(page, "station", tmp_path)
    # Recorded as who asked.
    events = httpx.get(
        f"{console.base}/api/events",
        params={"kind": "CommandRequested", "station": "CP-START"},
        headers=console.auth("read"),
    ).json()["items"]
    assert [(e["event"]["key"], e["event"]["command"]) for e in events] == [
        ("operator", "remote_start")
    ]
    # The transactions page lists it; its detail page draws the meter values.
    page.goto(console.base + "/console/transactions?station=CP-START")
    page.wait_for_selector("body[data-ready=true]")
    link = page.get_by_role("link", name=str(transaction_id), exact=True)
    expect(link).to_be_visible()
    screenshot(page, "transactions", tmp_path)
    link.click()
    page.wait_for_selector("body[data-ready=true]")
    expect(page.locator("#content h1")).to_contain_text(f"Transaction {transaction_id}")
    expect(page.locator("figcaption")).to_contain_text("4 meter values", timeout=WAIT_MS)
    energy = page.locator("#meter-chart polyline.energy").get_attribute("points") or ""
    power = page.locator("#meter-chart polyline.power").get_attribute("points") or ""
    assert len(energy.split()) == 4 and len(power.split()) == 3
    expect(page.locator("#transaction-detail table.frames")).to_contain_text("StartTransaction")
    expect(page.locator("#transaction-detail table.frames")).to_contain_text("MeterValues")
    screenshot(page, "transaction", tmp_path)
    page.close()


def test_remote_start_from_the_command_panel_reaches_a_simulated_station(
    console: Console, browser: Browser
) -> None:
    """The shipped tools alone: a station of ``chargeledger simulate`` accepts the remote
    start the console sends and starts a transaction, which the station page shows."""
    simulator = subprocess.Popen(
        [
            *(sys.executable, "-m", "chargeledger.core.cli", "simulate", console.server.url),
            *("--stations", "1", "--hold", "120", "--id-prefix", "SIMC-", "--progress-every", "0"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:

        def booted() -> bool:
            answer = httpx.get(
                f"{console.base}/api/stations/SIMC-00000", headers=console.auth("read")
            )
            return answer.status_code == 200 and answer.json()["state"]["connected"]

        wait_for(booted, what="the simulated station connected")
        page = console.page(browser, "operator", "/console/station?id=SIMC-00000")
        expect(page.locator("#station-state h1")).to_contain_text("connected", timeout=WAIT_MS)
        _remote_start(console, page, "SIMC-00000")
        transactions = page.locator("#station-state table.transactions")
        expect(transactions).to_contain_text("active", timeout=WAIT_MS)
        expect(page.locator("#station-frames")).to_contain_text("StartTransaction")
        page.close()
    finally:
        simulator.terminate()
        simulator.wait(10)


def test_message_mode_checks_the_payload_against_the_schema(
    console: Console, browser: Browser, tmp_path: Path
) -> None:
    console.stations.connect("CP-MSG")
    page = console.page(browser, "operator", "/console/station?id=CP-MSG")
    page.click("[data-tab=message]")
    page.select_option("#message-action", "TriggerMessage")
    expect(page.locator("#message-schema")).to_contain_text('"requestedMessage"', timeout=WAIT_MS)
    editor = page.locator("#message-payload")
    editor.fill('{"requestedMessage": "Coffee"}')
    expect(page.locator("#message-check")).to_contain_text("Coffee", timeout=WAIT_MS)
    expect(page.locator("#message-send")).to_be_disabled()
    editor.fill('{"requestedMessage": ')
    expect(page.locator("#message-check")).to_contain_text("Not JSON")
    editor.fill('{"requestedMessage": "Heartbeat"}')
    expect(page.locator("#message-check")).to_contain_text("Valid TriggerMessage payload")
    page.click("#message-send")
    expect(page.locator("#message-form output")).to_contain_text("Accepted", timeout=WAIT_MS)
    screenshot(page, "message-mode", tmp_path)
    page.close()


def test_read_only_key_sees_no_command_buttons(
    console: Console, browser: Browser, tmp_path: Path
) -> None:
    console.stations.connect("CP-READ")
    page = console.page(browser, "read", "/console/station?id=CP-READ")
    expect(page.locator("#station-state h1")).to_contain_text("CP-READ")
    assert page.locator("#commands").count() == 0
    assert page.locator("form.command, #message-form").count() == 0
    assert page.get_by_role("button", name="Send").count() == 0
    page.close()
    # An admin sees the admin-only use cases as well.
    admin = console.page(browser, "admin", "/console/station?id=CP-READ")
    assert admin.locator("form.command").count() == len(USE_CASES)
    admin.close()


def test_event_log_tails_live_with_links(
    console: Console, browser: Browser, tmp_path: Path
) -> None:
    cp = console.stations.connect("CP-LOG")
    page = console.page(browser, "read", "/console/events?station=CP-LOG")
    rows = page.locator("#event-rows tr")
    expect(rows.first).to_contain_text("CP-LOG", timeout=WAIT_MS)
    console.stations.run(cp.status(1, "Unavailable"))
    expect(page.locator("#event-rows")).to_contain_text('"Unavailable"', timeout=WAIT_MS)
    link = page.locator("#event-rows a", has_text="CP-LOG").first
    assert link.get_attribute("href") == "/console/station?id=CP-LOG"
    # A frame naming a transaction links to it.
    page.goto(console.base + "/console/events?kind=FrameLogged&back=1000")
    page.wait_for_selector("body[data-ready=true]")
    expect(page.locator('#event-rows a[href*="/console/transaction?"]').first).to_be_attached(
        timeout=WAIT_MS
    )
    screenshot(page, "events", tmp_path, full_page=False)
    page.close()


def test_audit_page_shows_findings_and_the_chain_verification(
    console: Console, browser: Browser, tmp_path: Path
) -> None:
    page = console.page(browser, "read", "/console/audit")
    since = (datetime.now(UTC) - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%S")
    page.fill("input[name=since]", since)
    page.click("#content button[type=submit]")
    expect(page.locator("#chains")).to_contain_text("Every chain is intact", timeout=WAIT_MS)
    report = page.frame_locator("iframe.report")
    expect(report.locator("body")).to_contain_text("Each finding shows", timeout=WAIT_MS)
    assert "run=1" in page.url and "since=" in page.url
    screenshot(page, "audit", tmp_path)
    page.close()


def test_tokens_local_lists_and_reservations_pages(
    console: Console, browser: Browser, tmp_path: Path
) -> None:
    operator = console.auth("operator")
    assert (
        httpx.put(
            f"{console.base}/api/tokens/04A2B3C4",
            headers=operator,
            json={"group": "FLEET-1", "owner": "van 3"},
        ).status_code
        == 200
    )
    assert (
        httpx.put(
            f"{console.base}/api/local-lists/fleet",
            headers=operator,
            json={"selection": "group", "group": "FLEET-1"},
        ).status_code
        == 200
    )
    for name, wanted in (
        ("tokens", "van 3"),
        ("local-lists", "FLEET-1"),
        ("reservations", "No reservations"),
    ):
        page = console.page(browser, "read", f"/console/{name}")
        expect(page.locator("#content")).to_contain_text(wanted)
        screenshot(page, name, tmp_path)
        page.close()


def test_every_page_and_the_api_docs_render_cut_off_from_the_network(
    console: Console, browser: Browser, tmp_path: Path
) -> None:
    context = browser.new_context(viewport={"width": 1280, "height": 860})
    refused = offline(context)
    page = context.new_page()
    page.goto(console.base + "/console/stations")
    page.evaluate("key => sessionStorage.setItem('chargeledger.apiKey', key)", console.keys["read"])
    for name in PAGES:
        if PAGES[name].nav:
            page.goto(f"{console.base}/console/{name}")
            page.wait_for_selector("body[data-ready=true]", timeout=WAIT_MS)
    with context.expect_page() as opened:
        page.get_by_role("link", name="API docs").click()
    docs = opened.value
    assert docs.url == console.base + "/api/schema"
    expect(docs.locator(".swagger-ui .info .title")).to_contain_text(
        "ChargeLedger API", timeout=WAIT_MS
    )
    expect(docs.locator(".opblock").first).to_be_visible()
    assert docs.locator(".opblock").count() >= 29
    assert refused == []
    screenshot(docs, "api-docs", tmp_path)
    context.close()


# -- without a browser ------------------------------------------------------------------------


def test_the_message_mode_check_is_the_one_of_message_mode(console: Console) -> None:
    read = console.auth("read")
    url = f"{console.base}/console/validate/ocpp1.6/TriggerMessage"
    assert httpx.post(url, headers=read, json={"requestedMessage": "Heartbeat"}).json() == {
        "valid": True,
        "code": None,
        "message": None,
    }
    refused = httpx.post(url, headers=read, json={"requestedMessage": "Coffee"}).json()
    assert refused["valid"] is False and refused["code"] and "Coffee" in refused["message"]
    unknown = httpx.post(f"{console.base}/console/validate/ocpp1.6/Warp", headers=read, json={})
    assert unknown.json()["code"] == "NotImplemented"
    unknown_version = f"{console.base}/console/validate/ocpp9/Warp"
    assert httpx.post(unknown_version, headers=read, json={}).status_code == 400
    assert httpx.post(url, json={}).status_code == 401


def test_a_form_per_use_case_from_its_arguments() -> None:
    forms = {form["name"]: form for form in use_case_forms(Caller("x", "admin"))}
    assert list(forms) == list(USE_CASES)
    kinds = {f.name: f.kind for f in forms["remote_start"]["fields"]}
    assert kinds == {
        "id_token": "str",
        "evse_id": "int",
        "connector_id": "int",
        "charging_limit_w": "float",
        "id_token_type": "str",
    }
    required = {f.name for f in forms["remote_start"]["fields"] if f.required}
    assert required == {"id_token"}
    (kind,) = forms["reset"]["fields"][:1]
    assert kind.kind == "choice" and "hard" in kind.choices and kind.default == "soft"
    assert [f.kind for f in forms["remote_stop"]["fields"]] == ["id"]
    assert forms["change_availability"]["fields"][0].kind == "bool"
    assert [f.kind for f in forms["read_configuration"]["fields"]] == ["lines"]
    assert [f.kind for f in forms["set_variables"]["fields"]] == ["pairs"]
    (profile, *_) = forms["set_security_profile"]["fields"]
    assert (profile.minimum, profile.maximum) == (1, 3)
    assert forms["remote_start"]["summary"] == USE_CASES["remote_start"].summary
    operator = {form["name"] for form in use_case_forms(Caller("x", "operator"))}
    assert operator == {u.name for u in USE_CASES.values() if u.role == "operator"}
    assert use_case_forms(Caller("x", "read")) == []


def _frame(position: int, text: str) -> Recorded:
    event = FrameLogged(station="S", session="s", at=0.0, direction="in", text=text)
    return Recorded(position, "session:s", position, event)


def test_meter_curve_reads_energy_and_power_of_both_versions() -> None:
    transaction = TransactionState(
        transaction_id="T1",
        station="S",
        protocol="ocpp2.0.1",
        connector_id=1,
        id_tag=None,
        id_tag_status=None,
        start_timestamp=None,
        meter_start=None,
        started_at=0.0,
        started_position=1,
    )
    sample = (
        '[2,"m{n}","TransactionEvent",{{"eventType":"Updated","transactionInfo":'
        '{{"transactionId":"T1"}},"meterValue":[{{"timestamp":"2026-11-21T10:0{n}:00Z",'
        '"sampledValue":[{{"value":{e},"measurand":"Energy.Active.Import.Register",'
        '"unitOfMeasure":{{"unit":"kWh"}}}},{{"value":{p},"measurand":"Power.Active.Import",'
        '"unitOfMeasure":{{"unit":"W","multiplier":3}}}}]}}]}}]'
    )
    frames = [
        _frame(3, sample.format(n=2, e=2.5, p=11)),
        _frame(2, sample.format(n=1, e=1.0, p=7)),
        _frame(4, '[3,"m1",{}]'),
    ]
    curve = meter_curve(transaction, frames)
    assert curve["points"] == 2
    assert [(r["time"], r["energy"], r["power"]) for r in curve["rows"]] == [
        ("2026-11-21T10:01:00.000Z", 1000.0, 7000.0),
        ("2026-11-21T10:02:00.000Z", 2500.0, 11000.0),
    ]
    left, right = ([float(c) for c in point.split(",")] for point in curve["energy"].split())
    assert left == [curve["left"], curve["bottom"]] and right == [curve["right"], curve["top"]]
    assert meter_curve(transaction, []) == {"points": 0, "rows": []}


def test_a_page_is_one_entry_and_one_template() -> None:
    with pytest.raises(ValueError, match="already registered"):
        register(ConsolePage(name="stations", title="x", template="x", load=PAGES["stations"].load))
    assert [p.name for p in PAGES.values() if p.nav] == [
        "stations",
        "transactions",
        "events",
        "audit",
        "tokens",
        "local-lists",
        "reservations",
        "tariffs",
        "cdrs",
        "sites",
        "firmware-campaigns",
    ]
    templates = DOCS.parent / "core" / "console" / "templates"
    for page in PAGES.values():
        assert (templates / page.template).exists(), page.template
    guide = (DOCS / "console.md").read_text()
    pictures = ("login", "stations", "station", "message-mode", "transactions", "transaction")
    blocks = ("station-blocks", "station-charging", "transaction-cost", "tariffs", "cdrs")
    blocks += ("sites", "firmware-campaigns")
    for picture in (*pictures, "events", "audit", "tokens", "local-lists", "api-docs", *blocks):
        assert f"console/{picture}.png" in guide
        assert (SHOTS / f"{picture}.png").exists()


def test_chargeledger_serve_serves_the_console(tmp_path: Path) -> None:
    """The walkthrough of docs/console.md: ``chargeledger serve --api-port ...``, then the
    server's address in a browser leads to the console."""
    process = subprocess.Popen(
        [
            *(sys.executable, "-m", "chargeledger.core.cli", "serve", "--port", "0"),
            *("--api-port", "0", "--store", f"sqlite:///{tmp_path / 'walk.db'}"),
        ],
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stderr is not None
    try:
        deadline = time.monotonic() + 30
        found = None
        while found is None and time.monotonic() < deadline:
            found = re.search(r"HTTP API on (http://[\d.]+:\d+)/", process.stderr.readline())
        assert found, "serve did not log where the API listens"
        base = found.group(1)
        root = httpx.get(base + "/")
        assert root.status_code == 302 and root.headers["location"] == "/console/stations"
        shell = httpx.get(base + "/console/stations")
        assert shell.status_code == 200 and "/console/static/console.js" in shell.text
        assert httpx.get(base + "/console/static/console.js").status_code == 200
        # No keys configured: loopback only, every caller is local/admin.
        fragment = httpx.get(base + "/console/fragment/stations")
        assert fragment.status_code == 200 and fragment.headers["x-caller"] == "local (admin)"
    finally:
        process.terminate()
        process.wait(30)


def test_a_201_station_page_shows_its_evses_and_201_actions(
    console: Console, browser: Browser, tmp_path: Path
) -> None:
    async def connect() -> Any:
        ws = await websockets.connect(
            f"{console.server.url}/CP-201", subprotocols=[websockets.Subprotocol("ocpp2.0.1")]
        )
        for frame in (
            '[2,"b","BootNotification",{"reason":"PowerUp","chargingStation":'
            '{"model":"Volt","vendorName":"Watt","firmwareVersion":"9.1"}}]',
            '[2,"s","StatusNotification",{"timestamp":"2026-11-21T10:00:00Z",'
            '"connectorStatus":"Occupied","evseId":2,"connectorId":1}]',
        ):
            await ws.send(frame)
            assert (await ws.recv()).startswith("[3,")
        return ws

    ws = console.stations.run(connect())
    try:
        page = console.page(browser, "operator", "/console/station?id=CP-201")
        state = page.locator("#station-state")
        expect(state).to_contain_text("Watt / Volt")
        connectors = page.locator("table.connectors tbody tr")
        expect(connectors).to_have_count(1)
        expect(connectors.first.locator("td")).to_have_text(
            ["2", "1", "Occupied", "", "", "2026-11-21T10:00:00Z", re.compile(r"\d{4}-")]
        )
        page.click("[data-tab=message]")
        page.select_option("#message-action", "RequestStartTransaction")
        expect(page.locator("#message-schema")).to_contain_text('"remoteStartId"', timeout=WAIT_MS)
        link = page.locator("#schema-link").get_attribute("href")
        assert link == "/console/schemas/v201/RequestStartTransactionRequest.json"
        expect(page.locator("#message-check")).to_contain_text("$.remoteStartId", timeout=WAIT_MS)
        page.close()
    finally:
        console.stations.run(ws.close())
