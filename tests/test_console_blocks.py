"""The console's pages of the device-management, diagnostics and tariff blocks, in a real
headless Chromium against a running server, with ``ocpp`` charge points as the stations: a
station's meter readings, display messages, log uploads, monitors and customer-information
reports; the tariffs page with an admin's forms; a transaction's cost; the CDRs with cost.

The server, the browser and the stations' loop are those of ``tests/test_console.py`` (its
module-scoped fixtures, one set for this module)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import websockets
from ocpp.v16 import call as call16
from ocpp.v201 import call as call201
from playwright.sync_api import Browser, expect

from tests import test_certificates, test_e2e_v201, test_firmware
from tests import test_console as shared
from tests.diagnostics_station import Diagnostics201
from tests.polling import wait_for
from tests.test_console import WAIT_MS, Console, screenshot
from tests.test_display_meter import Displays

# test_console's fixtures: pytest registers them here under their own names (one server and
# one browser for this module).
console, playwright, browser = shared.console, shared.playwright, shared.browser


class BlockStation(Displays, Diagnostics201, test_certificates.Station201):
    """The 2.0.1 e2e test station (which holds charging profiles) with certificates, a
    display, log uploads, monitors and customer data."""


def _connect(console: Console, name: str, station: Any, protocol: str) -> Any:
    """A booted ``station`` (a charge point class with a ``boot`` coroutine) named ``name``
    on the stations' loop, closed with the module's stations."""

    async def connect() -> Any:
        ws = await websockets.connect(
            f"{console.server.url}/{name}", subprotocols=[websockets.Subprotocol(protocol)]
        )
        cp = station(name, ws)
        task = asyncio.create_task(cp.start())
        await cp.boot()
        console.stations.connected[name] = (cp, ws, task)
        return cp

    return console.stations.run(connect())


def _get(console: Console, role: str, path: str) -> Any:
    answer = httpx.get(console.base + path, headers=console.auth(role), timeout=20)
    assert answer.status_code == 200, answer.text
    return answer.json()


def _command(console: Console, station: str, role: str, **payload: Any) -> dict[str, Any]:
    answer = httpx.post(
        f"{console.base}/api/stations/{station}/commands",
        headers=console.auth(role),
        json=payload,
        timeout=20,
    )
    assert answer.status_code == 200, answer.text
    found: dict[str, Any] = answer.json()
    assert found["accepted"], found
    return found


def test_station_page_shows_meter_display_logs_monitors_and_customer_data(
    console: Console, browser: Browser, tmp_path: Path
) -> None:
    station = "CP-BLOCKS"
    cp: BlockStation = _connect(console, station, BlockStation, "ocpp2.0.1")
    # Meter values outside a transaction: a voltage per phase and the main meter's energy.
    console.stations.run(
        cp.call(
            call201.MeterValues(
                evse_id=1,
                meter_value=[
                    {
                        "timestamp": "2026-11-21T10:05:00Z",
                        "sampledValue": [
                            {"value": 231.5, "measurand": "Voltage", "phase": "L1-N"},
                            {"value": 229.0, "measurand": "Voltage", "phase": "L2-N"},
                        ],
                    }
                ],
            )
        )
    )
    console.stations.run(
        cp.call(call201.MeterValues(evse_id=0, meter_value=test_e2e_v201.meter(88_123)))
    )
    _command(
        console,
        station,
        "operator",
        use_case="set_display_message",
        id=7,
        content="Welcome to bay 7",
        priority="InFront",
        start="2026-01-01T00:00:00Z",
        end="2099-01-01T00:00:00Z",
    )
    _command(
        console,
        station,
        "operator",
        use_case="set_display_message",
        id=8,
        content="Closed for works",
        start="2099-01-01T00:00:00Z",
    )
    log = _command(
        console, station, "operator", use_case="get_log", remote_location="ftp://logs.example/"
    )
    monitors = _command(
        console,
        station,
        "operator",
        use_case="set_variable_monitoring",
        monitors=[{"key": "EVSE@1.Power", "type": "UpperThreshold", "value": 20000, "severity": 4}],
    )
    (monitor_id,) = [m["id"] for m in monitors["values"]["monitors"]]
    console.stations.run(cp.fire(monitor_id, "21500"))
    _command(console, station, "operator", use_case="customer_information", id_token="TAG-C")
    _command(
        console,
        station,
        "admin",
        use_case="install_certificate",
        certificate_type="CSMSRootCertificate",
        certificate=test_certificates.ROOT_PEM,
    )
    for event_type in ("TamperDetectionActivated", "InvalidMessages"):
        console.stations.run(
            cp.call(
                call201.SecurityEventNotification(
                    type=event_type, timestamp="2026-11-21T10:07:00Z", tech_info=f"{event_type}!"
                )
            )
        )
    # Plug & Charge: a certificate status whose responder is no HTTP address is refused.
    hash_data = {
        "hashAlgorithm": "SHA256",
        "issuerNameHash": "ab" * 32,
        "issuerKeyHash": "cd" * 32,
        "serialNumber": "5eed",
        "responderURL": "file:///etc/passwd",
    }
    status = console.stations.run(
        cp.call(call201.GetCertificateStatus(ocsp_request_data=hash_data))
    )
    assert status.status == "Failed"
    profile = _command(
        console,
        station,
        "operator",
        use_case="set_charging_profile",
        purpose="TxDefaultProfile",
        evse_id=1,
        start_schedule=(datetime.now(UTC) - timedelta(minutes=1)).isoformat(),
        periods=[{"start": 0, "limit": 11000}, {"start": 3600, "limit": 7400}],
    )
    wait_for(lambda: len(cp.uploads) >= 4, what="the uploads and the customer report answered")

    page = console.page(browser, "operator", f"/console/station?id={station}")
    readings = page.locator("#meter-readings tbody tr")
    expect(readings.filter(has_text="L1-N")).to_contain_text("231.5")
    expect(readings.filter(has_text="L2-N")).to_contain_text("229")
    expect(readings.filter(has_text="Energy.Active.Import.Register")).to_contain_text("88123")
    messages = page.locator("#display-messages tbody tr")
    expect(messages.filter(has_text="Welcome to bay 7")).to_contain_text("current")
    expect(messages.filter(has_text="Welcome to bay 7")).to_contain_text("InFront")
    expect(messages.filter(has_text="Closed for works")).to_contain_text("pending")
    upload = page.locator("#log-uploads tbody tr").filter(has_text="ftp://logs.example/")
    expect(upload).to_contain_text(str(log["values"]["request_id"]))
    expect(upload).to_contain_text("Uploading → Uploaded", timeout=WAIT_MS)
    monitor = page.locator("#monitors tbody tr").filter(has_text="EVSE@1.Power")
    expect(monitor.locator("td").nth(6)).to_have_text("1")
    expect(monitor).to_contain_text("21500")
    customer = page.locator("#customer-information tbody tr").filter(has_text="TAG-C")
    expect(customer).to_contain_text("Ada Lovelace", timeout=WAIT_MS)
    expect(customer).to_contain_text("operator (operator)")
    root = page.locator("#certificates tbody tr").filter(has_text="CSMSRootCertificate")
    expect(root).to_contain_text("installed")
    expect(root).to_contain_text(test_certificates.ROOT_HASH["serialNumber"])
    events = page.locator("#security-events tbody tr")
    expect(events.filter(has_text="TamperDetectionActivated")).to_contain_text("critical")
    expect(events.filter(has_text="InvalidMessages")).not_to_contain_text("critical")
    expect(page.locator("h2", has_text="Security events")).to_contain_text("1 critical")
    pnc = page.locator("#plug-and-charge tbody tr")
    expect(pnc.filter(has_text="GetCertificateStatus")).to_contain_text("Failed")
    expect(pnc.filter(has_text="OCSP check")).to_contain_text("file:///etc/passwd")
    expect(pnc.filter(has_text="OCSP check")).to_contain_text("5eed")
    charging = page.locator("#charging-profiles tbody tr").filter(has_text="TxDefaultProfile")
    expect(charging).to_contain_text(str(profile["values"]["profile_id"]))
    expect(charging).to_contain_text("0: 11000.0 W, 3600: 7400.0 W")
    composite = page.locator('#composite-schedules figure[data-place="1"]')
    expect(composite.locator("figcaption")).to_contain_text("11000")
    assert (composite.locator("img").get_attribute("src") or "").startswith(
        "data:image/svg+xml;base64,"
    )
    expect(page.locator('#composite-schedules figure[data-place="0"]')).to_be_attached()
    expect(page.locator("#station-links")).to_contain_text(f"GET /api/stations/{station}/meter")
    expect(page.locator("#station-links")).to_contain_text("customer_information")
    # A live page: a new reading shows up without a reload.
    page.evaluate("window.notReloaded = true")
    console.stations.run(
        cp.call(call201.MeterValues(evse_id=0, meter_value=test_e2e_v201.meter(88_999)))
    )
    expect(readings.filter(has_text="Energy.Active.Import.Register")).to_contain_text(
        "88999", timeout=WAIT_MS
    )
    assert page.evaluate("window.notReloaded") is True
    page.set_viewport_size({"width": 1280, "height": 1100})
    page.evaluate(
        "document.getElementById('meter-readings').previousElementSibling.scrollIntoView()"
    )
    screenshot(page, "station-blocks", tmp_path, full_page=False)
    page.evaluate(
        "document.getElementById('charging-profiles').previousElementSibling.scrollIntoView()"
    )
    screenshot(page, "station-charging", tmp_path, full_page=False)
    page.close()

    # A read key sees the same views but the customer data (the API's operator role).
    page = console.page(browser, "read", f"/console/station?id={station}")
    expect(page.locator("#display-messages")).to_contain_text("Welcome to bay 7")
    expect(page.locator("#monitors")).to_contain_text("EVSE@1.Power")
    assert page.locator("#customer-information").count() == 0
    expect(page.locator("#station-state")).not_to_contain_text("Ada Lovelace")
    page.close()


TARIFF = (
    '{"currency": "EUR", "energy_per_kwh": "0.30", "session_fee": "1.00", "tax_rate": "0.19",'
    ' "timezone": "Europe/Berlin", "valid_from": "2026-01-01T00:00:00+01:00",'
    ' "bands": [{"days": ["Sat", "Sun"], "start": "00:00", "end": "24:00",'
    ' "energy_per_kwh": "0.25"}]}'
)


def test_tariffs_page_defines_and_assigns_and_a_transaction_shows_its_cost(
    console: Console, browser: Browser, tmp_path: Path
) -> None:
    page = console.page(browser, "admin", "/console/tariffs")
    expect(page.locator("#tariffs")).to_contain_text("No tariffs defined")
    define = page.locator("#define-tariff")
    define.locator("input[name=id]").fill("STANDARD")
    define.locator("textarea[name=tariff]").fill(TARIFF)
    define.locator("button[type=submit]").click()
    expect(define.locator("output")).to_contain_text("200 done", timeout=WAIT_MS)
    row = page.locator('#tariffs tr[data-tariff="STANDARD"]')
    expect(row).to_contain_text("0.30/kWh", timeout=WAIT_MS)
    expect(row).to_contain_text("Sat,Sun 00:00-24:00: 0.25/kWh")
    expect(row).to_contain_text("2026-01-01T00:00:00+01:00")
    expect(row).to_contain_text("Europe/Berlin")
    expect(row).to_contain_text("0.19")
    expect(row).to_contain_text("admin")
    # A refused definition shows the API's problem and changes nothing.
    define.locator("input[name=id]").fill("BAD")
    define.locator("textarea[name=tariff]").fill('{"currency": "euro"}')
    define.locator("button[type=submit]").click()
    expect(define.locator("output")).to_contain_text("400", timeout=WAIT_MS)
    assign = page.locator("#assign-tariff")
    assign.locator("input[name=tariff_id]").fill("STANDARD")
    assign.locator("input[name=target]").fill("default")
    assign.locator("button[type=submit]").click()
    expect(assign.locator("output")).to_contain_text("200 done", timeout=WAIT_MS)
    expect(page.locator("#assignments")).to_contain_text("every token", timeout=WAIT_MS)
    screenshot(page, "tariffs", tmp_path)
    page.close()
    assert [t["tariff"]["id"] for t in _get(console, "admin", "/api/tariffs")] == ["STANDARD"]

    # A read key sees the tariffs but no form.
    page = console.page(browser, "read", "/console/tariffs")
    expect(page.locator("#tariffs")).to_contain_text("STANDARD")
    assert page.locator("#tariff-forms, form[data-api-method]").count() == 0
    assert page.get_by_role("button", name="Define").count() == 0
    page.close()

    # A 1.6 transaction under the default tariff: 3000 Wh on Saturday 2026-11-21 (Berlin
    # time), so at the weekend band's 0.25 EUR/kWh: 0.75, plus the 1.00 fee, plus 19 % tax.
    cp = console.stations.connect("CP-COST")
    _command(console, "CP-COST", "operator", use_case="remote_start", id_token="04A2B3C4")
    wait_for(lambda: cp.transactions, what="the station started a transaction")
    (transaction_id,) = cp.transactions
    wait_for(
        lambda: any(
            r["measurand"] == "Energy.Active.Import.Register" and float(r["value"]) == 3600
            for r in _get(console, "read", "/api/stations/CP-COST/meter")["readings"]
        ),
        what="the station's last meter value",
    )
    console.stations.run(
        cp.call(
            call16.StopTransaction(
                meter_stop=4000, timestamp="2026-11-21T10:40:00Z", transaction_id=transaction_id
            )
        )
    )
    page = console.page(
        browser, "read", f"/console/transaction?station=CP-COST&id={transaction_id}"
    )
    expect(page.locator("#transaction-tariff")).to_contain_text("STANDARD")
    expect(page.locator("#transaction-tariff")).to_contain_text("0.30 EUR/kWh")
    breakdown = page.locator("#cost-breakdown")
    expect(breakdown.locator("tr", has_text="Energy").first).to_contain_text("0.75")
    expect(breakdown.locator("tr", has_text="Session fee")).to_contain_text("1.00")
    expect(breakdown.locator("tr", has_text="Net")).to_contain_text("1.75")
    expect(breakdown.locator("tr", has_text="Tax")).to_contain_text("0.33")
    expect(breakdown.locator("tr", has_text="Total")).to_contain_text("2.08")
    screenshot(page, "transaction-cost", tmp_path)
    page.get_by_role("link", name="Its charge detail record").click()
    page.wait_for_selector("body[data-ready=true]")
    record = page.locator("#cdrs tbody tr").filter(has_text=str(transaction_id))
    expect(record).to_contain_text("STANDARD EUR")
    cells = record.locator("td")
    (cdr,) = _get(console, "read", "/api/billing/cdrs?station=CP-COST")["items"]
    assert (cdr["cost_energy"], cdr["cost_total"]) == ("0.75", "2.08")
    expect(cells.nth(7)).to_have_text(cdr["cost_energy"])
    expect(cells.nth(12)).to_have_text(cdr["cost_net"])
    expect(cells.nth(14)).to_have_text(cdr["cost_total"])
    screenshot(page, "cdrs", tmp_path)
    page.close()


def test_sites_page_defines_a_site_for_admins_only(
    console: Console, browser: Browser, tmp_path: Path
) -> None:
    cp = console.stations.connect("CP-SITE-1")
    page = console.page(browser, "admin", "/console/sites")
    expect(page.locator("#sites")).to_contain_text("No sites defined")
    form = page.locator("#define-site")
    form.locator("input[name=site]").fill("DEPOT")
    form.locator("textarea[name=definition]").fill(
        '{"stations": ["CP-SITE-1"], "limit": 32, "unit": "A", "description": "the depot",'
        ' "strategy": "priority", "priorities": {"CP-SITE-1": 5},'
        ' "phase_limits": {"L1": 40}, "station_phases": {"CP-SITE-1": ["L1"]},'
        ' "periods": [{"start": "17:00", "end": "20:00", "limit": 32}]}'
    )
    form.locator("button[type=submit]").click()
    expect(form.locator("output")).to_contain_text("200 done", timeout=WAIT_MS)
    row = page.locator('#sites tr[data-site="DEPOT"]')
    expect(row).to_contain_text("the depot", timeout=WAIT_MS)
    expect(row).to_contain_text("CP-SITE-1 (priority 5)")
    expect(row).to_contain_text("32.0 A")
    expect(row).to_contain_text("priority")
    expect(row).to_contain_text("L1 40.0 A")
    expect(row).to_contain_text("17:00-20:00 UTC: 32.0 A")
    expect(row).to_contain_text("CP-SITE-1 on L1")
    # A transaction starts at one of its stations: the site_limits plugin allocates the limit.
    _command(console, "CP-SITE-1", "operator", use_case="remote_start", id_token="04A2B3C4")
    wait_for(lambda: cp.transactions, what="the station started a transaction")
    allocation = page.locator("#sites table.allocations tbody tr").filter(has_text="CP-SITE-1")
    expect(allocation).to_contain_text("32.0 A", timeout=WAIT_MS)
    expect(allocation).to_contain_text("yes")
    form.locator("input[name=site]").fill("LOOP")
    form.locator("textarea[name=definition]").fill('{"parent": "NOWHERE"}')
    form.locator("button[type=submit]").click()
    expect(form.locator("output")).to_contain_text("400", timeout=WAIT_MS)
    screenshot(page, "sites", tmp_path)
    page.close()
    assert [s["site"] for s in _get(console, "read", "/api/sites")] == ["DEPOT"]
    for role in ("read", "operator"):
        page = console.page(browser, role, "/console/sites")
        expect(page.locator("#sites")).to_contain_text("DEPOT")
        assert page.locator("#site-forms, form[data-api-method]").count() == 0
        page.close()


def test_firmware_campaign_page_and_a_station_s_firmware(
    console: Console, browser: Browser, tmp_path: Path
) -> None:
    cp = _connect(console, "CP-FW1", test_firmware.Station16, "ocpp1.6")
    page = console.page(browser, "operator", "/console/firmware-campaigns")
    expect(page.locator("#campaign-list")).to_contain_text("No firmware campaigns")
    form = page.locator("#create-campaign")
    form.locator("textarea[name=campaign]").fill(
        '{"name": "acme 2.0", "location": "' + test_firmware.LOCATION + '",'
        ' "stations": ["CP-FW1"], "interval": 1}'
    )
    form.locator("button[type=submit]").click()
    expect(form.locator("output")).to_contain_text("201 done", timeout=WAIT_MS)
    campaign = page.locator("article.campaign").filter(has_text="acme 2.0")
    expect(campaign.locator("h2")).to_contain_text("completed", timeout=WAIT_MS)
    row = campaign.locator("table.campaign-stations tbody tr").filter(has_text="CP-FW1")
    expect(row).to_contain_text("installed")
    expect(campaign).to_contain_text(test_firmware.LOCATION)
    screenshot(page, "firmware-campaigns", tmp_path)
    # A bad campaign (it selects nothing) shows the API's problem.
    form.locator("textarea[name=campaign]").fill('{"location": "x", "stations": ["NOPE"]}')
    form.locator("button[type=submit]").click()
    expect(form.locator("output")).to_contain_text("400", timeout=WAIT_MS)
    page.close()
    assert cp.version == "2.0"

    page = console.page(browser, "read", "/console/station?id=CP-FW1")
    expect(page.locator("#firmware")).to_contain_text("2.0")
    update = page.locator("#firmware-updates tbody tr").first
    expect(update).to_contain_text("Downloading → Downloaded → Installing → Installed")
    expect(update).to_contain_text("1.0 → 2.0")
    page.close()
    page = console.page(browser, "read", "/console/firmware-campaigns")
    expect(page.locator("#campaign-list")).to_contain_text("acme 2.0")
    assert page.locator("#campaign-forms, form[data-api-method]").count() == 0
    page.close()
