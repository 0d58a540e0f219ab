"""The walkthroughs of docs/device-management.md, run: every command of their ``sh`` blocks
against a server with a 1.6 and a 2.0.1 station (the ``ocpp`` package's charge points)
connected, each printing what the line under it says (``# → TEXT``: TEXT is in its output).
A read is retried until it shows it, since the stations report after they answer."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import time
from pathlib import Path

import websockets

from chargeledger.core.settings import Settings
from chargeledger.schemas import OCPP16
from tests import test_e2e_v16, test_e2e_v201
from tests.harness import RunningServer, running_server
from tests.polling import DEADLINE
from tests.test_diagnostics import Station16, Station201

DOC = Path(__file__).resolve().parent.parent / "docs" / "device-management.md"
SECTIONS = ("Diagnostics and logs", "Monitoring", "Customer information")


def walkthrough(section: str) -> list[tuple[str, str]]:
    """Each command of the section's ``sh`` blocks and the text it must print."""
    text = DOC.read_text().split(f"\n## {section}\n", 1)[1].split("\n## ", 1)[0]
    steps = []
    for block in re.findall(r"```sh\n(.*?)```", text, re.S):
        lines = block.splitlines()
        for line, following in zip(lines, [*lines[1:], ""], strict=True):
            if not line.startswith("#"):
                expected = re.fullmatch(r"# → (.+)", following.strip())
                assert expected, f"no '# → TEXT' line under: {line}"
                steps.append((line, expected.group(1)))
    return steps


def _run(command: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    cli = f"{sys.executable} -m chargeledger.core.cli "
    line = re.sub(r"^chargeledger ", cli, command)
    return subprocess.run(["bash", "-c", line], capture_output=True, text=True, env=env, timeout=60)


def test_the_walkthroughs_run(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'walkthrough.db'}"
    steps = [step for section in SECTIONS for step in walkthrough(section)]
    assert len(steps) >= 12

    async def scenario(server: RunningServer) -> list[tuple[str, str, str]]:
        assert server.csms is not None
        ws16 = await websockets.connect(f"{server.url}/CP-16", subprotocols=[OCPP16])
        cp16 = Station16("CP-16", ws16)
        task16 = asyncio.create_task(cp16.start())
        cp, ws, task = await test_e2e_v201.connect(server, "CP-201", Station201)
        base = f"http://127.0.0.1:{server.csms.api_port}"
        env = {
            "PATH": "/usr/bin:/bin",
            "API": base,
            "CHARGELEDGER_API_URL": base,
            "CHARGELEDGER_STORE": store,
            "PYTHONWARNINGS": "ignore",
        }
        wrong = []
        try:
            await cp16.call(
                test_e2e_v16.call.BootNotification(charge_point_model="M", charge_point_vendor="V")
            )
            assert await cp.boot() == "Accepted"
            for command, expected in steps:
                started = time.monotonic()
                while True:
                    done = await asyncio.to_thread(_run, command, env)
                    shown = done.stdout + done.stderr
                    if expected in shown or time.monotonic() - started > DEADLINE:
                        break
                    await asyncio.sleep(0.1)
                if done.returncode != 0 or expected not in shown:
                    wrong.append((command, expected, shown))
        finally:
            task.cancel()
            task16.cancel()
            await ws.close()
            await ws16.close()
        return wrong

    with running_server(Settings(port=0, store=store, api_port=0)) as server:
        wrong = asyncio.run(scenario(server))
    assert not wrong, wrong
