"""The station identity taken from the URL path, over real WebSocket handshakes on loopback:
split on ``/`` before percent-decoding, ``+`` literal, undecodable escapes, empty or overlong
identities and characters outside OCPP's identifierString set refused with 400 and a recorded
``HandshakeRejected``."""

from __future__ import annotations

import asyncio
import json
import string
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import quote

import pytest
import websockets
from hypothesis import given, settings
from hypothesis import strategies as st

from chargeledger.core.events import HandshakeRejected, SessionOpened
from chargeledger.core.gateway import IDENTITY_CHARACTERS, MAX_IDENTITY_LENGTH, station_identity
from chargeledger.core.settings import Settings
from tests.harness import RunningServer, running_server

BOOT = '[2,"boot","BootNotification",{"chargePointVendor":"V","chargePointModel":"M"}]'


@dataclass(frozen=True)
class Outcome:
    """What became of one handshake: the HTTP status (101 when accepted), the identity the
    server recorded for it and, for a refusal, the reason it recorded and answered."""

    status: int
    station: str
    reason: str = ""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    store = f"sqlite:///{tmp_path_factory.mktemp('identity') / 'identity.db'}"
    with running_server(Settings(port=0, store=store)) as running:
        yield running


async def _handshake(server: RunningServer, path: str) -> tuple[int, str]:
    """Open ``path``; once accepted, boot (so its ``SessionOpened`` is committed) and close.
    The HTTP status and, for a refusal, the response body."""
    assert server.csms is not None
    url = f"ws://127.0.0.1:{server.csms.port}{path}"
    try:
        ws = await websockets.connect(url, subprotocols=[websockets.Subprotocol("ocpp1.6")])
    except websockets.InvalidStatus as refused:
        return refused.response.status_code, refused.response.body.decode()
    try:
        await ws.send(BOOT)
        assert json.loads(await ws.recv())[0] == 3, "the booted station is answered"
    finally:
        await ws.close()
    return 101, ""


def handshake(server: RunningServer, path: str) -> Outcome:
    """Run a handshake for ``path`` and read back what the server recorded for it (the last
    ``SessionOpened`` or ``HandshakeRejected`` with this path)."""
    status, body = asyncio.run(_handshake(server, path))
    assert server.csms is not None
    recorded = [
        r.event
        for r in server.csms.store.iter_all()
        if isinstance(r.event, SessionOpened | HandshakeRejected) and r.event.path == path
    ]
    assert recorded, f"nothing recorded for {path!r}"
    event = recorded[-1]
    if isinstance(event, SessionOpened):
        assert status == 101, (path, status, body)
        return Outcome(101, event.station)
    assert (event.status, event.reason) == (status, body), "the recorded refusal is the answer"
    return Outcome(event.status, event.station, event.reason)


UTF8_REFUSAL = "the station identity in the URL path is not valid UTF-8 once percent-decoded"
EMPTY_REFUSAL = "no station identity in the URL path"


def too_long(identity: str) -> str:
    return (
        f"the station identity is {len(identity)} characters long;"
        f" at most {MAX_IDENTITY_LENGTH} are allowed"
    )


ALLOWED = frozenset(string.ascii_letters + string.digits + "*-_=:+|@.")
"""OCPP 2.0.1 identifierString: the characters an identity may hold, spelled independently
of the gateway's pattern."""


def outside(characters: str) -> str:
    """The refusal of an identity holding ``characters`` (each once, in order) outside the set."""
    return f"the station identity holds characters outside {IDENTITY_CHARACTERS}: {characters!r}"


def expected_outcome(name: str) -> Outcome:
    """How the handshake of the decoded identity ``name`` must end: length first, then set."""
    if len(name) > MAX_IDENTITY_LENGTH:
        return Outcome(400, name, too_long(name))
    if not set(name) <= ALLOWED:
        return Outcome(
            400, name, outside("".join(dict.fromkeys(c for c in name if c not in ALLOWED)))
        )
    return Outcome(101, name)


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        # Split on "/" first, then decode: an escaped slash is part of the identity, and
        # outside OCPP's character set.
        ("/ocpp/CP%2F01", Outcome(400, "CP/01", outside("/"))),
        ("/ocpp/CP%2f01/", Outcome(400, "CP/01", outside("/"))),
        ("/a/b/CP%2F%2F", Outcome(400, "CP//", outside("/"))),
        # "+" is a plus (unquote, not unquote_plus); a space is only ever "%20".
        ("/ocpp/CP+01", Outcome(101, "CP+01")),
        ("/ocpp/CP%2B01", Outcome(101, "CP+01")),
        ("/ocpp/CP%2001", Outcome(400, "CP 01", outside(" "))),
        ("/ocpp/caf%C3%A9", Outcome(400, "caf\u00e9", outside("\u00e9"))),
        # The whole set, escaped or not.
        ("/ocpp/aZ09*-_=:+|@.", Outcome(101, "aZ09*-_=:+|@.")),
        ("/ocpp/%61%5A%30%2A%2D%5F%3D%3A%2B%7C%40%2E", Outcome(101, "aZ0*-_=:+|@.")),
        # The query string is not part of the identity; an escaped "?" is.
        ("/ocpp/CP-Q?token=a%2Fb", Outcome(101, "CP-Q")),
        ("/ocpp/CP%3FQ", Outcome(400, "CP?Q", outside("?"))),
        # A "%" that starts no escape stays literal, and is outside the set.
        ("/ocpp/CP%", Outcome(400, "CP%", outside("%"))),
        ("/ocpp/CP%G1", Outcome(400, "CP%G1", outside("%"))),
        ("/ocpp/CP%2525", Outcome(400, "CP%25", outside("%"))),
        ("/ocpp/C%00P%7F", Outcome(400, "C\x00P\x7f", outside("\x00\x7f"))),
        # Escapes that are not UTF-8: refused, nothing mangled recorded as the identity.
        ("/ocpp/%FF", Outcome(400, "", UTF8_REFUSAL)),
        ("/ocpp/CP%C3", Outcome(400, "", UTF8_REFUSAL)),
        ("/ocpp/%ED%A0%80", Outcome(400, "", UTF8_REFUSAL)),  # an encoded surrogate
        ("/ocpp/%C0%AF", Outcome(400, "", UTF8_REFUSAL)),  # an overlong "/"
        # Empty segments are skipped; no segment at all is refused.
        ("/ocpp//", Outcome(101, "ocpp")),
        ("/", Outcome(400, "", EMPTY_REFUSAL)),
        ("//?x=CP", Outcome(400, "", EMPTY_REFUSAL)),
        # At most 48 characters (counted decoded): 48 pass, 49 are refused.
        ("/ocpp/" + "A" * 48, Outcome(101, "A" * 48)),
        ("/ocpp/" + "%C3%A9" * 48, Outcome(400, "\u00e9" * 48, outside("\u00e9"))),
        ("/ocpp/" + "A" * 49, Outcome(400, "A" * 49, too_long("A" * 49))),
        ("/ocpp/" + "%2F" * 49, Outcome(400, "/" * 49, too_long("/" * 49))),
    ],
)
def test_identity_from_the_path(server: RunningServer, path: str, expected: Outcome) -> None:
    assert handshake(server, path) == expected


SAFE = "+@:=*|-_.~!$&'(),;"
"""Characters a station may leave unescaped in its path segment."""


@settings(max_examples=40, deadline=None)
@given(
    name=st.text(
        st.characters(codec="utf-8") | st.sampled_from("/%+ ?#") | st.sampled_from(sorted(ALLOWED)),
        min_size=1,
        max_size=MAX_IDENTITY_LENGTH + 8,
    ),
    safe=st.sampled_from(["", "+", SAFE]),
    prefix=st.sampled_from(["/", "/ocpp/", "/ocpp/v16/"]),
    suffix=st.sampled_from(["", "/", "?id=x%2Fy", "/?a=b+c"]),
)
def test_any_identity_round_trips_or_is_refused_for_its_length(
    server: RunningServer, name: str, safe: str, prefix: str, suffix: str
) -> None:
    """Any text, "/", "%" and "+" included, escaped the way a station might: accepted as
    exactly that text when it is short enough and in the set, refused with the reason
    otherwise."""
    path = prefix + quote(name, safe=safe) + suffix
    assert station_identity(path) == name
    assert handshake(server, path) == expected_outcome(name)


@settings(max_examples=25, deadline=None)
@given(st.binary(min_size=1, max_size=24))
def test_escaped_bytes_are_decoded_as_utf8_or_refused(server: RunningServer, raw: bytes) -> None:
    path = "/ocpp/" + "".join(f"%{byte:02X}" for byte in raw)
    try:
        name = raw.decode("utf-8")
    except UnicodeDecodeError:
        with pytest.raises(UnicodeDecodeError):
            station_identity(path)
        expected = Outcome(400, "", UTF8_REFUSAL)
    else:
        expected = expected_outcome(name)
    assert handshake(server, path) == expected
