"""What ``chargeledger serve`` checks before it creates anything, and how a start-up failure
reads: one line per mistake, naming the setting and the thing (``docs/operations.md``).

:func:`startup_problems` checks, in this order and creating nothing (no store file, no
schema, no socket left bound): the TLS files (readable, a certificate and key that load),
the certificate-signing files (readable), the store URL (understood), every port to listen
on (free on its address, no two the same), and the store (reachable, readable, writable:
:func:`~chargeledger.core.store.probe_store`). The server starts only when the list is
empty, so a port already in use never leaves an empty SQLite file behind.

:func:`failure_lines` turns what a start-up raised anyway (a port taken between the check
and the bind, a store failing while the log is folded) into the same kind of lines, for
the exception groups trio raises; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterator
from pathlib import Path

from chargeledger.core.archive import read_archive
from chargeledger.core.errors import ChargeLedgerError
from chargeledger.core.security import server_ssl_context
from chargeledger.core.settings import Settings
from chargeledger.core.store import backend_for, probe_store

__all__ = ["failure_lines", "one_line", "startup_problems"]


def one_line(exc: BaseException) -> str:
    """``exc``'s message on one line (a database driver's often spans several)."""
    text = " ".join(str(exc).split())
    if isinstance(exc, OSError) and exc.strerror:
        # "[Errno 98] Address already in use" -> "Address already in use", file name kept.
        text = exc.strerror if exc.filename is None else f"{exc.filename}: {exc.strerror}"
    return text or type(exc).__name__


def startup_problems(settings: Settings) -> list[str]:
    """Every mistake that would stop ``settings`` from serving, one line each; empty when
    the server can start. Creates nothing."""
    problems = list(_tls_problems(settings))
    problems += _archive_problems(settings)
    store_understood = True
    try:
        backend_for(settings.store)
    except ValueError as exc:
        problems.append(f"store: {one_line(exc)}")
        store_understood = False
    problems += _port_problems(settings)
    if store_understood:
        try:
            probe_store(settings.store)
        except ValueError as exc:
            problems.append(f"store: {one_line(exc)}")
        except ChargeLedgerError as exc:
            problems.append(one_line(exc))
    return problems


def _tls_problems(settings: Settings) -> Iterator[str]:
    tls = settings.tls
    if tls is not None:
        files = {"tls.cert_file": tls.cert_file, "tls.key_file": tls.key_file}
        if tls.ca_file is not None:
            files["tls.ca_file"] = tls.ca_file
        unreadable = list(_unreadable(files))
        yield from unreadable
        if not unreadable:
            try:
                server_ssl_context(tls)
            except (ssl.SSLError, OSError) as exc:
                yield (
                    f"tls: {tls.cert_file} / {tls.key_file}: not a PEM certificate chain and "
                    f"its private key ({one_line(exc)})"
                )
    signing = settings.certificate_signing
    yield from _unreadable(
        {
            f"certificate_signing.{name}": path
            for name, path in (
                ("ca_certificate", signing.ca_certificate),
                ("ca_key", signing.ca_key),
                ("chain", signing.chain),
            )
            if path is not None
        }
    )


def _archive_problems(settings: Settings) -> list[str]:
    """Each of ``archives`` must be readable and an archive (its header line is read)."""
    files = {f"archives[{n}]": path for n, path in enumerate(settings.archives)}
    problems = list(_unreadable(files))
    if problems:
        return problems
    for path in settings.archives:
        try:
            read_archive(Path(path))
        except (ValueError, OSError) as exc:
            problems.append(f"archives: {one_line(exc)}")
    return problems


def _unreadable(files: dict[str, str]) -> Iterator[str]:
    for setting, path in files.items():
        try:
            with open(path, "rb") as file:
                file.read(1)
        except OSError as exc:
            yield f"{setting} {path}: {exc.strerror or one_line(exc)}"


def _port_problems(settings: Settings) -> list[str]:
    listening = [("port", settings.host, settings.port)]
    if settings.tls is not None and settings.tls.port is not None:
        listening.append(("tls.port", settings.host, settings.tls.port))
    if settings.api_port is not None:
        listening.append(("api_port", settings.api_host, settings.api_port))
    problems = []
    taken: dict[int, str] = {}
    for setting, host, port in listening:
        if port and port in taken:
            problems.append(f"{setting} {port}: already given as {taken[port]}")
            continue
        taken[port] = setting
        problem = _bind_problem(host, port)
        if problem is not None:
            problems.append(f"{setting} {port} on {host}: {problem}")
    return problems


def _bind_problem(host: str, port: int) -> str | None:
    """Why a listener could not be bound to ``host:port`` (as trio binds one: every address
    the name resolves to, ``SO_REUSEADDR``, IPv6 only on IPv6 sockets); ``None`` when it
    could. The sockets are closed at once."""
    if not 0 <= port <= 65535:
        return "not a port number (0 to 65535)"
    try:
        addresses = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError) as exc:
        return f"cannot resolve the address ({one_line(exc)})"
    for family, kind, proto, _, address in addresses:
        try:
            with socket.socket(family, kind, proto) as probe:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if family == socket.AF_INET6:
                    probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                probe.bind(address)
        except OSError as exc:
            return one_line(exc).lower()
    return None


_EXPECTED = (OSError, ssl.SSLError, ValueError, ChargeLedgerError)


def failure_lines(exc: BaseException) -> list[str] | None:
    """One line per failure in ``exc`` (an exception or a group of them) when each is a
    start-up failure (an address, a file, a setting, the store); ``None`` when any is not
    (a bug: let its traceback show)."""
    leaves = list(_leaves(exc))
    if not leaves or not all(isinstance(leaf, _EXPECTED) for leaf in leaves):
        return None
    return [one_line(leaf) for leaf in leaves]


def _leaves(exc: BaseException) -> Iterator[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            yield from _leaves(inner)
    else:
        yield exc
