"""The scenarios, and the worker that drives one share of the stations through them.

Every run has the same phases, so that what is measured is only the scenario's own load:

1. **setup**: each station gets into the state the scenario starts from (connected, booted,
   a transaction open), at most ``connect_concurrency`` connecting at once, within
   ``SETUP_LIMIT`` seconds;
2. **measure**: the scenario's load, until ``--duration`` has passed or ``--calls`` CALLs
   were sent (storms: until every station is through, at most ``--duration``);
3. **hold**: stations stay connected and idle for ``--hold`` seconds (idle memory is read at
   its end);
4. **teardown**: open transactions are stopped and connections closed, within
   ``TEARDOWN_LIMIT`` seconds.

All stations of all workers pass each phase boundary together (a :class:`PhaseSync`), which
is when the CPU and memory of the server and of the simulator are read. A station that is
not in use answers pings and refuses CSMS CALLs, so a long hold does not look like a dead
peer to the CSMS.
"""

from __future__ import annotations

import gc
import math
import random
import secrets
from abc import ABC, abstractmethod
from array import array
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import ClassVar

import msgspec
import trio

from chargeledger.core.simulator.credentials import Credentials, StationKeys
from chargeledger.core.simulator.frames import frames_for
from chargeledger.core.simulator.progress import Snapshot
from chargeledger.core.simulator.station import (
    CONNECT_TIMEOUT,
    Station,
    Tally,
    Target,
    expire_overdue_calls,
)

__all__ = [
    "LAG_PROBE",
    "MARKS",
    "PHASES",
    "SCENARIOS",
    "SETUP_LIMIT",
    "TEARDOWN_LIMIT",
    "Plan",
    "Scenario",
    "WorkerReport",
    "run_worker",
]

LOAD_GC_THRESHOLDS = (100_000, 50, 100)
"""The collector's thresholds while stations run (Python's default is 700, 10, 10)."""
LAG_PROBE = 0.05
"""Seconds between the samples of the event loop's lag."""
SETUP_LIMIT = 300.0
TEARDOWN_LIMIT = 60.0
PHASES = ("setup", "measure", "teardown")
MARKS = ("measure-start", "measure-end", "idle", "end")
"""The phase boundaries every worker passes together, in order."""


class Plan(msgspec.Struct, frozen=True, kw_only=True):
    """What one worker does: the run's settings and its share of stations and CALLs."""

    scenario: str
    protocol: str
    target: Target
    first_station: int
    stations: int
    id_width: int
    calls: int | None
    """This worker's share of ``--calls`` (None: no limit)."""
    duration: float
    interval: float
    meter_values: int
    connect_concurrency: int
    hold: float
    call_timeout: float
    id_prefix: str
    id_tag: str
    seed: int
    credentials: Credentials = Credentials()


class WorkerReport(msgspec.Struct, kw_only=True):
    """What one worker saw: a tally per phase, its CPU seconds at each mark, the stations
    still connected when the idle mark was passed, its event loop's lag in the measured
    phase (seconds)."""

    tallies: dict[str, Tally]
    cpu_at: dict[str, float]
    connected_at_idle: int
    loop_lag: array[float]


PhaseSync = Callable[[str], Awaitable[None]]
"""``await sync(mark)`` returns once every worker has reached ``mark`` and its readings are
taken."""


class Run:
    """What the stations of one worker share: the plan, a tally per phase, the connection
    limiter, the measured phase's budget, and the phase boundaries."""

    def __init__(self, plan: Plan, stations: int) -> None:
        self.plan = plan
        self.rng = random.Random(f"{plan.seed}-{plan.first_station}")
        self.tallies = {phase: Tally() for phase in PHASES}
        self.limiter = trio.CapacityLimiter(plan.connect_concurrency)
        self.calls_left = math.inf if plan.calls is None else plan.calls
        self.measure_start = math.inf
        self.deadline = math.inf
        self.measuring = trio.Event()
        self.tearing_down = trio.Event()
        self.all_set_up = trio.Event()
        self.all_measured = trio.Event()
        self._pending = {"setup": stations, "measure": stations}

    def done(self, phase: str) -> None:
        """One station is through ``phase``."""
        self._pending[phase] -= 1
        if not self._pending[phase]:
            (self.all_set_up if phase == "setup" else self.all_measured).set()

    def start_measuring(self) -> None:
        self.measure_start = trio.current_time()
        self.deadline = self.measure_start + self.plan.duration
        self.measuring.set()

    def in_time(self) -> bool:
        return trio.current_time() < self.deadline

    def take_call(self) -> bool:
        """Whether one more CALL may be sent in the measured phase (and count it)."""
        if self.calls_left <= 0 or not self.in_time():
            return False
        self.calls_left -= 1
        return True


async def connect_then(
    station: Station, run: Run, tally: Tally, first: str, *args: str, storm: bool = False
) -> bool:
    """Connect and send the CALL ``first`` (a frame kind), at most ``connect_concurrency``
    stations at once; whether it was answered and not refused. In a ``storm`` a station
    whose turn comes after ``--duration`` gives up (counted)."""
    async with run.limiter:
        if storm and not run.in_time():
            tally.fail("timeouts", "storm: --duration was over before this station's turn")
            return False
        if not await station.connect(tally):
            return False
        return await station.call(first, tally, *args) is not None


async def stop_transaction(station: Station, tally: Tally) -> None:
    await station.stop(tally)


class Scenario(ABC):
    """A load shape. ``setup`` returns whether the station is ready to be measured."""

    name: ClassVar[str]
    summary: ClassVar[str]

    async def setup(self, station: Station, run: Run) -> bool:
        return await connect_then(station, run, run.tallies["setup"], "boot")

    @abstractmethod
    async def measure(self, station: Station, run: Run) -> None: ...

    async def teardown(self, station: Station, run: Run) -> None:
        tally = run.tallies["teardown"]
        if station.frames.transaction is not None:
            await stop_transaction(station, tally)
        await station.close()


class ConnectStorm(Scenario):
    name = "connect-storm"
    summary = "every station connects and boots at once; measures the time to boot them all"

    async def setup(self, station: Station, run: Run) -> bool:
        return True

    async def measure(self, station: Station, run: Run) -> None:
        await connect_then(station, run, run.tallies["measure"], "boot", storm=True)


class ChargingScenario(Scenario):
    """Stations charging: booted, one transaction open from setup to teardown."""

    async def setup(self, station: Station, run: Run) -> bool:
        tally = run.tallies["setup"]
        return (
            await connect_then(station, run, tally, "boot")
            and await station.call("start_transaction", tally) is not None
        )


class SteadyLoad(ChargingScenario):
    name = "steady"
    summary = "MeterValues every --interval seconds per station, inside transactions"

    async def measure(self, station: Station, run: Run) -> None:
        tally = run.tallies["measure"]
        interval = run.plan.interval
        # Stations sample on their own clocks: spread the first samples over one interval.
        next_at = run.measure_start + run.rng.uniform(0, interval)
        while station.connected:
            await station.idle_until(min(next_at, run.deadline), tally)
            if not run.take_call():
                return
            await station.call("meter_values", tally)
            now = trio.current_time()
            next_at += interval
            if next_at < now:  # late: skip the samples missed, as a meter's clock does
                next_at += math.ceil((now - next_at) / interval) * interval


class Saturation(ChargingScenario):
    name = "saturation"
    summary = "each station keeps one MeterValues CALL in flight, back to back"

    async def measure(self, station: Station, run: Run) -> None:
        tally = run.tallies["measure"]
        while station.connected and run.take_call():
            await station.call("meter_values", tally)


class TransactionCycles(Scenario):
    name = "transaction-cycles"
    summary = "Authorize, StartTransaction, --meter-values MeterValues, StopTransaction, again"

    async def measure(self, station: Station, run: Run) -> None:
        tally = run.tallies["measure"]
        plan = run.plan
        steps = ("authorize", "start_transaction", *["meter_values"] * plan.meter_values)
        while station.connected:
            for step in (*steps, "stop_transaction"):
                if plan.interval > 0:
                    await station.idle_until(
                        min(trio.current_time() + plan.interval, run.deadline), tally
                    )
                if not run.take_call():
                    return  # an open transaction is stopped in teardown
                if step == "stop_transaction":
                    await stop_transaction(station, tally)
                elif await station.call(step, tally) is None and step in steps[:2]:
                    break  # not authorized or not started: begin a new cycle


class ReconnectStorm(Scenario):
    name = "reconnect-storm"
    summary = "booted stations all lose their connection, reconnect and send StatusNotification"

    async def measure(self, station: Station, run: Run) -> None:
        # A network outage: no close handshake; the CSMS learns of it from TCP, or from the
        # new connection of the same station.
        station.abort("network outage")
        tally = run.tallies["measure"]
        await connect_then(station, run, tally, "status_notification", "Available", storm=True)


SCENARIOS: dict[str, type[Scenario]] = {
    scenario.name: scenario
    for scenario in (ConnectStorm, SteadyLoad, Saturation, TransactionCycles, ReconnectStorm)
}


async def _watch_loop_lag(run: Run, lags: array[float]) -> None:
    """Forever: how much later than asked a short sleep returns, in the measured phase."""
    while True:
        asked = trio.current_time() + LAG_PROBE
        await trio.sleep_until(asked)
        if run.measuring.is_set() and not run.all_measured.is_set():
            lags.append(trio.current_time() - asked)


async def _drive(station: Station, scenario: Scenario, run: Run) -> None:
    """Take ``station`` through every phase; each phase bounded in time."""
    setup = run.tallies["setup"]
    with trio.move_on_at(trio.current_time() + SETUP_LIMIT) as scope:
        ready = await scenario.setup(station, run)
    if scope.cancelled_caught:
        ready = False
        setup.fail("timeouts", f"setup not finished within {SETUP_LIMIT:.0f} s")
        station.abort("setup limit")
    run.done("setup")
    await station.idle_until_set(run.measuring, setup)

    measure = run.tallies["measure"]
    if ready:
        # In-flight work ends by itself within these limits; this only guards against a hang.
        cutoff = run.deadline + run.plan.call_timeout + CONNECT_TIMEOUT
        with trio.move_on_at(cutoff) as scope:
            await scenario.measure(station, run)
        if scope.cancelled_caught:
            measure.fail("timeouts", "measured phase: still busy long after --duration")
            station.abort("measure limit")
    run.done("measure")

    teardown = run.tallies["teardown"]
    await station.idle_until_set(run.tearing_down, teardown)
    with trio.move_on_after(TEARDOWN_LIMIT) as scope:
        await scenario.teardown(station, run)
    if scope.cancelled_caught:
        teardown.fail("timeouts", f"teardown not finished within {TEARDOWN_LIMIT:.0f} s")
        station.abort("teardown limit")


@contextmanager
def _collector_tuned_for_load() -> Iterator[None]:
    """Collect garbage less often while the stations run, and let :func:`gc.freeze` spare the
    setup's objects. With Python's defaults the collector took about 40 % of the simulator's
    CPU with 10,000 stations (full collections walking every station's objects, again and
    again), and stalled its event loop for hundreds of milliseconds."""
    thresholds = gc.get_threshold()
    gc.set_threshold(*LOAD_GC_THRESHOLDS)
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)


async def _report_progress(
    run: Run, stations: list[Station], every: float, report: Callable[[Snapshot], None]
) -> None:
    """Forever: every ``every`` seconds, hand ``report`` a snapshot of the stations."""
    while True:
        await trio.sleep(every)
        tallies = run.tallies.values()
        if not run.measuring.is_set():
            phase = "setup"
        elif not run.all_measured.is_set():
            phase = "measure"
        else:
            phase = "hold" if not run.tearing_down.is_set() else "teardown"
        report(
            Snapshot(
                connected=sum(station.connected for station in stations),
                answered=sum(tally.counts["answered"] for tally in tallies),
                failed=sum(tally.failed for tally in tallies),
                csms_calls=sum(tally.counts["csms_calls"] for tally in tallies),
                phase=phase,
            )
        )


async def run_worker(
    plan: Plan,
    sync: PhaseSync,
    process_time: Callable[[], float],
    progress: Callable[[Snapshot], None] | None = None,
    progress_every: float = 1.0,
) -> WorkerReport:
    """Run ``plan``'s stations through the scenario, passing every mark of ``MARKS`` with
    ``sync``; ``process_time`` reads this worker's CPU seconds. ``progress``, when given,
    gets a :class:`Snapshot` every ``progress_every`` seconds."""
    run = Run(plan, plan.stations)
    scenario = SCENARIOS[plan.scenario]()
    token = secrets.token_hex(4)
    keys = StationKeys(plan.credentials)
    stations = [
        Station(
            f"{plan.id_prefix}{index:0{plan.id_width}d}",
            plan.target,
            plan.protocol,
            frames_for(plan.protocol, plan.id_tag, run.rng),
            token,
            plan.call_timeout,
            keys,
        )
        for index in range(plan.first_station, plan.first_station + plan.stations)
    ]
    cpu_at: dict[str, float] = {}

    async def mark(name: str) -> None:
        cpu_at[name] = process_time()
        await sync(name)

    connected_at_idle = 0
    lags: array[float] = array("d")
    with _collector_tuned_for_load():
        async with trio.open_nursery() as nursery:
            nursery.start_soon(expire_overdue_calls, stations, plan.call_timeout)
            nursery.start_soon(_watch_loop_lag, run, lags)
            if progress is not None:
                nursery.start_soon(_report_progress, run, stations, progress_every, progress)
            async with trio.open_nursery() as station_nursery:
                for station in stations:
                    station_nursery.start_soon(_drive, station, scenario, run)
                await run.all_set_up.wait()
                gc.freeze()  # what setup built lives until teardown: no collection walks it
                await mark("measure-start")
                run.start_measuring()
                await run.all_measured.wait()
                await mark("measure-end")
                await trio.sleep(plan.hold)
                connected_at_idle = sum(station.connected for station in stations)
                await mark("idle")
                run.tearing_down.set()
            nursery.cancel_scope.cancel()
    await mark("end")
    return WorkerReport(
        tallies=run.tallies, cpu_at=cpu_at, connected_at_idle=connected_at_idle, loop_lag=lags
    )
