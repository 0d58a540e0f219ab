"""Fuzz target: the WebSocket opening handshake of a real gateway, over loopback.

Run by ``make fuzz`` (``python -m tests.fuzz.fuzz_handshake -runs=N CORPUS_DIR``; any
libFuzzer flag works). A real server (:func:`tests.harness.running_server`, on a memory store:
the handshake never depends on the backend) runs on its own thread; each input becomes the
bytes of one connection:
an HTTP upgrade request whose request line, path (the station identity), headers and
``Sec-WebSocket-Protocol`` offers are chosen by the input (or, for a few inputs, the raw
bytes themselves), sent to the gateway's port. Coverage-guided by atheris over
``chargeledger.core.gateway``.

A crash is: no answer and no close within :data:`ANSWER_DEADLINE` (a hang); an answer that is
not HTTP; a status other than 101, 400 or 426; a 101 without a station identity in the path,
or whose subprotocol was not offered or is not one we speak (or is missing although a
supported one was offered); an exception logged by the gateway's connection handler (it
contains them, but each is a bug in our handshake code); the server thread dying.
"""

from __future__ import annotations

import logging
import socket
import sys
import traceback
from collections import Counter
from pathlib import Path

import atheris

with atheris.instrument_imports(include=["chargeledger.core.gateway"]):
    from chargeledger.core import gateway
from chargeledger.core.settings import Settings
from chargeledger.schemas import PROTOCOLS
from tests.harness import RunningServer

ANSWER_DEADLINE = 5.0
"""Seconds a connection may wait for the gateway's answer or close."""
HANDSHAKE_DEADLINE = 0.05
"""The gateway's opening handshake timeout while fuzzing, so half-sent requests end quickly."""

REPORT_EVERY = 1000
"""Inputs between two summaries on stderr."""

METHODS = [b"GET", b"get", b"POST", b"HEAD", b"GET GET", b""]
VERSIONS = [b"HTTP/1.1", b"HTTP/1.0", b"HTTP/2", b"HTTP/1.1 x", b""]
OFFERS = [b"ocpp1.6", b"ocpp2.0.1", b"ocpp2.0", b"ocpp1.5", b"OCPP1.6", b"", b" ", b"ocpp1.6 "]
PATH_PIECES = [b"/", b"ocpp", b"CP01", b"%2F", b"%", b"%ff", b"%C3%A9", b"+", b"?", b"#", b".."]
KEY = b"dGhlIHNhbXBsZSBub25jZQ=="
HEADERS = [
    (b"Host", [b"localhost", b"", b"a b"]),
    (b"Upgrade", [b"websocket", b"WebSocket", b"h2c", b""]),
    (b"Connection", [b"Upgrade", b"keep-alive, Upgrade", b"close", b""]),
    (b"Sec-WebSocket-Key", [KEY, b"short", b"", b"====================++=="]),
    (b"Sec-WebSocket-Version", [b"13", b"8", b"", b"13, 8"]),
]


class GatewayErrors(logging.Handler):
    """Sorts the exceptions the gateway's connection handler logs (and contains).

    One raised in our code is a crash of the target (kept in ``ours``). One raised inside the
    WebSocket libraries while they parse the peer's bytes (wsproto lets a non-ASCII ``Host``
    escape as ``UnicodeDecodeError``, see docs/testing.md) is a library bug that the handler
    contains as documented: it closes that connection only; it is counted in ``contained``.
    """

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.ours: list[BaseException] = []
        self.contained: Counter[str] = Counter()

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info is None or record.exc_info[1] is None:
            return
        for leaf in leaves(record.exc_info[1]):
            frames = traceback.extract_tb(leaf.__traceback__)
            if frames and "/chargeledger/" in frames[-1].filename:
                self.ours.append(leaf)
            else:
                where = Path(frames[-1].filename).name if frames else "?"
                self.contained[f"{type(leaf).__name__} in {where}"] += 1


def leaves(error: BaseException) -> list[BaseException]:
    """The exceptions inside ``error``, exception groups opened."""
    if isinstance(error, BaseExceptionGroup):
        return [leaf for inner in error.exceptions for leaf in leaves(inner)]
    return [error]


def pick(data: atheris.FuzzedDataProvider, choices: list[bytes]) -> bytes:
    """One of ``choices`` or, now and then, bytes of the input's own."""
    index = data.ConsumeIntInRange(0, len(choices))
    if index == len(choices):
        return data.ConsumeBytes(data.ConsumeIntInRange(0, 24))
    return choices[index]


def request_bytes(raw: bytes) -> bytes:
    """The bytes one connection sends."""
    data = atheris.FuzzedDataProvider(raw)
    if data.ConsumeIntInRange(0, 15) == 15:  # not 0: zero bytes abound in mutated inputs
        return data.ConsumeBytes(4096)
    path = b"".join(pick(data, PATH_PIECES) for _ in range(data.ConsumeIntInRange(0, 6)))
    if data.ConsumeBool():
        path = b"/ocpp/" + path
    lines = [pick(data, METHODS) + b" " + path + b" " + pick(data, VERSIONS)]
    for name, values in HEADERS:
        if data.ConsumeIntInRange(0, 7):
            lines.append(name + b": " + pick(data, values))
    for _ in range(data.ConsumeIntInRange(0, 2)):
        offer = [pick(data, OFFERS) for _ in range(data.ConsumeIntInRange(0, 3))]
        lines.append(b"Sec-WebSocket-Protocol: " + b",".join(offer))
    for _ in range(data.ConsumeIntInRange(0, 2)):
        lines.append(data.ConsumeBytes(16) + b": " + data.ConsumeBytes(16))
    end = b"\r\n" if data.ConsumeIntInRange(0, 15) == 15 else b"\r\n\r\n"
    return b"\r\n".join(lines) + end + data.ConsumeBytes(data.remaining_bytes())


def answer_head(sock: socket.socket) -> bytes:
    """The answer's status line and headers, or b"" when the gateway closed without one."""
    received = b""
    while b"\r\n\r\n" not in received:
        try:
            chunk = sock.recv(4096)
        except ConnectionResetError:
            return received
        except TimeoutError:
            raise AssertionError(f"no answer and no close in {ANSWER_DEADLINE} s") from None
        if not chunk:
            return received
        received += chunk
    return received.split(b"\r\n\r\n", 1)[0]


def header_values(head: bytes, name: bytes) -> list[bytes]:
    """The comma-separated values of every ``name`` header line of an HTTP ``head``."""
    prefix = name.lower() + b":"
    return [
        value.strip()
        for line in head.split(b"\r\n")[1:]
        if line.lower().startswith(prefix)
        for value in line[len(prefix) :].split(b",")
    ]


def check_upgrade(head: bytes, request: bytes) -> None:
    """A 101 must name a station and pick an offered subprotocol that we speak."""
    path = request.split(b"\r\n", 1)[0].split(b" ")[1].decode("latin-1")
    if not gateway.station_identity(path):
        raise AssertionError(f"accepted a request without a station identity: {request!r}")
    chosen = header_values(head, b"Sec-WebSocket-Protocol")
    offered = header_values(request.split(b"\r\n\r\n", 1)[0], b"Sec-WebSocket-Protocol")
    supported = [p for p in offered if p.decode("latin-1") in PROTOCOLS]
    if chosen and (chosen[0] not in supported or len(chosen) > 1):
        raise AssertionError(f"chose {chosen} from {offered}: {head!r}")
    if supported and not chosen:
        raise AssertionError(f"chose no subprotocol from {offered}: {head!r}")


class Target:
    """The server and the checks of each input against it."""

    def __init__(self, server: RunningServer, errors: GatewayErrors) -> None:
        self.server = server
        self.errors = errors
        self.inputs = 0

    def summary(self) -> str:
        """The figures of the run so far, for docs/testing.md."""
        contained = ", ".join(f"{n} {what}" for what, n in self.errors.contained.items())
        return f"handshake fuzz: {self.inputs} inputs; contained library errors: {contained}"

    def __call__(self, raw: bytes) -> None:
        request = request_bytes(raw)
        assert self.server.csms is not None
        address = ("127.0.0.1", self.server.csms.port)
        with socket.create_connection(address, timeout=ANSWER_DEADLINE) as sock:
            try:
                sock.sendall(request)
                sock.shutdown(socket.SHUT_WR)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the gateway refused and closed before reading it all
            head = answer_head(sock)
        if head:
            status = head.split(b"\r\n", 1)[0].split(b" ")
            if len(status) < 2 or status[0] != b"HTTP/1.1":
                raise AssertionError(f"not an HTTP answer: {head!r}")
            if status[1] not in (b"101", b"400", b"426"):
                raise AssertionError(f"status {status[1]!r} for {request!r}")
            if status[1] == b"101":
                check_upgrade(head, request)
        self.inputs += 1
        if self.inputs % REPORT_EVERY == 0:  # libFuzzer ends the process without atexit
            print(self.summary(), file=sys.stderr, flush=True)
        if self.errors.ours:
            raise AssertionError("the gateway's handler failed in our code") from (
                self.errors.ours.pop()
            )
        if not self.server._thread.is_alive():
            raise AssertionError("the server thread died")


def main() -> None:
    """libFuzzer's command line; an empty corpus directory given first is seeded."""
    argv = list(sys.argv)
    corpus = next((Path(arg) for arg in argv[1:] if not arg.startswith("-")), None)
    if corpus is not None:
        corpus.mkdir(parents=True, exist_ok=True)
        if not any(corpus.iterdir()):
            (corpus / "seed-zeros").write_bytes(bytes(64))
            (corpus / "seed-ones").write_bytes(b"\x01" * 64)
    errors = GatewayErrors()
    logging.getLogger("chargeledger.gateway").addHandler(errors)
    settings = Settings(port=0, store="memory://", handshake_timeout=HANDSHAKE_DEADLINE)
    server = RunningServer(settings).start()
    try:
        atheris.Setup(argv, Target(server, errors))
        atheris.Fuzz()
    finally:
        server.stop()


if __name__ == "__main__":
    main()
