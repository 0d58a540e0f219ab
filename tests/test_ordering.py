"""Commit before send, pinned on the socket: while a frame's commit is held, nothing of the
answer or CALL it belongs to reaches the station; when the commit fails, nothing does, ever.

The commit of a chosen frame is held (or failed) with the writer's ``before_commit`` seam,
on the writer thread, by a :class:`CommitGate` built on trio events; the station is a bare
TCP socket speaking WebSocket through ``wsproto``, so every byte the server sends is seen.
Each test here fails when the gateway sends a CALLRESULT or CALLERROR before committing it,
commits the CALL and its answer in two steps with the send in between, or sends one of its
own CALLs before committing it (``docs/testing.md``: the mutations and what catches them).
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import pytest
import trio
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    CloseConnection,
    Request,
    TextMessage,
)
from wsproto.events import (
    Event as WsEvent,
)

from chargeledger.core.api import CentralSystem
from chargeledger.core.errors import StoreUnavailable
from chargeledger.core.events import Event, FrameLogged, SessionClosed
from chargeledger.core.server import run_server
from chargeledger.core.settings import Settings
from tests.polling import eventually

QUIET = 0.2
"""How long the station listens for bytes that must not come. Every planted bug sends before
it even asks for the commit, so its bytes are already in the socket when the gate reports
the held commit: this only has to cover loopback delivery."""

STEP = 10
"""Deadline for each thing that must happen (a reply, a close, the gate being reached)."""

BOOT = '[2,"boot","BootNotification",{"chargePointVendor":"V","chargePointModel":"M"}]'
HEARTBEAT = '[2,"hb","Heartbeat",{}]'
INVALID = '[2,"bad","Authorize",{}]'  # idTag missing: the core answers with a CALLERROR


class RawStation:
    """A WebSocket client on a bare trio socket: nothing is read that the test did not ask for.

    ``wsproto`` does the framing only; the test decides when bytes are read, so
    :meth:`assert_silent` sees any byte the server sends, even half a frame.
    """

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self._ws = WSConnection(ConnectionType.CLIENT)
        self._events: deque[WsEvent] = deque()
        self._text = ""

    @classmethod
    async def connect(cls, port: int, station: str) -> RawStation:
        station_ = cls(await trio.open_tcp_stream("127.0.0.1", port))
        await station_._send(
            Request(host="127.0.0.1", target=f"/ocpp/{station}", subprotocols=["ocpp1.6"])
        )
        accepted = await station_._next_event()
        assert isinstance(accepted, AcceptConnection), accepted
        return station_

    async def _send(self, event: WsEvent) -> None:
        await self.stream.send_all(self._ws.send(event))

    async def _next_event(self) -> WsEvent:
        with trio.fail_after(STEP):
            while not self._events:
                data = await self.stream.receive_some()
                if not data:
                    raise AssertionError("the server dropped the connection without a close")
                self._ws.receive_data(data)
                self._events.extend(self._ws.events())
        return self._events.popleft()

    async def send(self, text: str) -> None:
        await self._send(TextMessage(data=text))

    async def receive(self) -> str | CloseConnection:
        """The next text message, or the server's close (answered, completing the handshake)."""
        while True:
            event = await self._next_event()
            if isinstance(event, CloseConnection):
                await self._send(event.response())
                return event
            assert isinstance(event, TextMessage), f"unexpected {event!r}"
            self._text += event.data
            if event.message_finished:
                text, self._text = self._text, ""
                return text

    async def call(self, text: str) -> list[Any]:
        """Send a CALL and return its answer, decoded."""
        await self.send(text)
        answer = await self.receive()
        assert isinstance(answer, str), f"closed instead of answering: {answer!r}"
        decoded: list[Any] = json.loads(answer)
        return decoded

    async def assert_silent(self) -> None:
        """Fail if any byte reaches the station within :data:`QUIET` seconds."""
        assert not self._events, f"already received: {list(self._events)}"
        with trio.move_on_after(QUIET):
            data = await self.stream.receive_some()
            raise AssertionError(f"{len(data)} byte(s) reached the station: {data!r}")


class CommitGate:
    """A ``before_commit`` hook holding (or failing) the commit of the batch holding a chosen
    event; other batches pass. Called on the writer thread; it talks to the test's trio loop
    through ``trio.from_thread``, so the hold is a trio event, not a sleep.

    ``reached`` is set once the chosen event's batch is at the gate. A holding gate keeps the
    writer thread there until :meth:`release`; a failing one raises ``StoreUnavailable`` (the
    writer fails the batch as it would for a broken database) and lets later batches pass.
    """

    def __init__(self, chosen: Callable[[Event], bool], *, fail: bool = False) -> None:
        self.chosen = chosen
        self.fail = fail
        self.reached = trio.Event()
        self._released = trio.Event()
        self._token = trio.lowlevel.current_trio_token()
        self._done = False

    def __call__(self, items: Sequence[tuple[str, int, Event]]) -> None:
        if self._done or not any(self.chosen(event) for _, _, event in items):
            return
        self._done = True  # one batch only: the session's close must still be recorded
        trio.from_thread.run_sync(self.reached.set, trio_token=self._token)
        if self.fail:
            raise StoreUnavailable("planted: the commit of the chosen frame fails")
        trio.from_thread.run(self._released.wait, trio_token=self._token)

    def release(self) -> None:
        self._released.set()


@contextmanager
def gate(
    csms: CentralSystem, chosen: Callable[[Event], bool], *, fail: bool = False
) -> Iterator[CommitGate]:
    """Install a :class:`CommitGate` on the server's writer; released and removed on exit
    (also when the test fails, so the writer thread never stays blocked)."""
    commit_gate = CommitGate(chosen, fail=fail)
    csms.gateway.writer.before_commit = commit_gate
    try:
        yield commit_gate
    finally:
        csms.gateway.writer.before_commit = None
        commit_gate.release()


def frame(direction: str, message_type: int) -> Callable[[Event], bool]:
    """Chooses the frame logged in ``direction`` with OCPP-J ``message_type`` (2 CALL,
    3 CALLRESULT, 4 CALLERROR), skipping the boot."""

    def chosen(event: Event) -> bool:
        return (
            isinstance(event, FrameLogged)
            and event.direction == direction
            and event.binary is None  # a binary frame's text is empty, not JSON
            and json.loads(event.text)[0] == message_type
            and "boot" not in event.text
        )

    return chosen


@asynccontextmanager
async def serving(tmp_path: Path) -> AsyncIterator[CentralSystem]:
    """A server in this test's trio run (no pings: every byte on the socket is a frame)."""
    settings = Settings(port=0, store=f"sqlite:///{tmp_path / 'ordering.db'}", ping_interval=0)
    async with trio.open_nursery() as nursery:
        csms: CentralSystem = await nursery.start(run_server, settings)
        yield csms
        nursery.cancel_scope.cancel()


async def booted(csms: CentralSystem, name: str) -> RawStation:
    station = await RawStation.connect(csms.port, name)
    assert (await station.call(BOOT))[2]["status"] == "Accepted"
    return station


async def recorded(csms: CentralSystem) -> list[Event]:
    return [r.event for r in await trio.to_thread.run_sync(lambda: list(csms.store.iter_all()))]


ANSWERS = [
    pytest.param(HEARTBEAT, frame("in", 2), 3, id="CALLRESULT-holding-the-CALL"),
    pytest.param(HEARTBEAT, frame("out", 3), 3, id="CALLRESULT-holding-the-answer"),
    pytest.param(INVALID, frame("in", 2), 4, id="CALLERROR-holding-the-CALL"),
    pytest.param(INVALID, frame("out", 4), 4, id="CALLERROR-holding-the-answer"),
]


@pytest.mark.parametrize(("sent", "held", "answer_type"), ANSWERS)
async def test_an_answer_leaves_only_after_its_commit(
    tmp_path: Path, sent: str, held: Callable[[Event], bool], answer_type: int
) -> None:
    async with serving(tmp_path) as csms:
        station = await booted(csms, "HOLD")
        with gate(csms, held) as commit:
            await station.send(sent)
            with trio.fail_after(STEP):
                await commit.reached.wait()
            await station.assert_silent()
            commit.release()
            answer = await station.receive()
        assert isinstance(answer, str)
        assert json.loads(answer)[:2] == [answer_type, json.loads(sent)[1]]
        log = [e for e in await recorded(csms) if isinstance(e, FrameLogged)]
        # What the station got is what was committed, right after the CALL it answers.
        assert [(e.direction, e.text) for e in log[-2:]] == [("in", sent), ("out", answer)]


async def test_our_call_leaves_only_after_its_commit(tmp_path: Path) -> None:
    async with serving(tmp_path) as csms:
        station = await booted(csms, "HOLD")
        results: list[dict[str, Any]] = []

        async def clear_cache() -> None:
            results.append(await csms.call("HOLD", "ClearCache", {}))

        async with trio.open_nursery() as nursery:
            with gate(csms, frame("out", 2)) as commit:
                nursery.start_soon(clear_cache)
                with trio.fail_after(STEP):
                    await commit.reached.wait()
                await station.assert_silent()
                commit.release()
                sent = await station.receive()
            assert isinstance(sent, str)
            message_type, message_id, action, _ = json.loads(sent)
            assert (message_type, action) == (2, "ClearCache")
            await station.send(json.dumps([3, message_id, {"status": "Accepted"}]))
        assert results == [{"status": "Accepted"}]
        texts = [e.text for e in await recorded(csms) if isinstance(e, FrameLogged)]
        assert sent in texts


async def closed_for_the_store(station: RawStation, csms: CentralSystem, name: str) -> None:
    """The station is told 1011 "event store unavailable" (and nothing else), and the close
    is recorded with the same code and reason."""
    closed = await station.receive()
    assert isinstance(closed, CloseConnection), f"got {closed!r} instead of the close"
    assert (closed.code, closed.reason) == (1011, "event store unavailable")

    async def close_recorded() -> list[SessionClosed]:
        events = await recorded(csms)
        return [e for e in events if isinstance(e, SessionClosed) and e.station == name]

    (record,) = await eventually(close_recorded, what="the recorded SessionClosed")
    assert (record.code, record.reason, record.by) == (1011, "event store unavailable", "csms")


@pytest.mark.parametrize(("sent", "held", "answer_type"), ANSWERS)
async def test_a_failed_commit_sends_no_answer_and_closes_1011(
    tmp_path: Path, sent: str, held: Callable[[Event], bool], answer_type: int
) -> None:
    async with serving(tmp_path) as csms:
        station = await booted(csms, "FAIL")
        with gate(csms, held, fail=True) as commit:
            await station.send(sent)
            with trio.fail_after(STEP):
                await commit.reached.wait()
            await closed_for_the_store(station, csms, "FAIL")
        texts = [e.text for e in await recorded(csms) if isinstance(e, FrameLogged)]
        assert sent not in texts, "the failed batch left no trace"


async def failed_call(csms: CentralSystem, name: str) -> list[StoreUnavailable]:
    """Fail the commit of a CALL we send to ``name``; check the close; return what its caller
    got by the time the close is recorded (``StoreUnavailable``: nothing was sent)."""
    station = await booted(csms, name)
    told: list[StoreUnavailable] = []

    async def clear_cache() -> None:
        try:
            await csms.call(name, "ClearCache", {})
        except StoreUnavailable as exc:
            told.append(exc)

    async with trio.open_nursery() as nursery:
        with gate(csms, frame("out", 2), fail=True) as commit:
            nursery.start_soon(clear_cache)
            with trio.fail_after(STEP):
                await commit.reached.wait()
            await closed_for_the_store(station, csms, name)
        with trio.move_on_after(1):
            await eventually(lambda: told, what="the caller to be told")
        nursery.cancel_scope.cancel()
    return told


async def test_a_failed_commit_of_our_call_sends_nothing_and_closes_1011(tmp_path: Path) -> None:
    async with serving(tmp_path) as csms:
        await failed_call(csms, "FAIL")


async def test_the_caller_of_a_call_whose_commit_failed_is_told(tmp_path: Path) -> None:
    async with serving(tmp_path) as csms:
        assert await failed_call(csms, "FAIL"), "the caller was never resolved"
