"""How simulated stations prove who they are: HTTP Basic passwords (security profiles 1 and 2),
the CA that vouches for the server (``wss://``), client certificates (profile 3).

A :class:`Credentials` is plain data (it crosses into worker processes); each worker turns it
into a :class:`StationKeys` that builds, per station, the ``Authorization`` header and the TLS
context, reusing one context for every station that shows no certificate of its own.

Client certificate layout (``--client-cert-dir DIR``): ``DIR/<station>.pem`` is the station's
certificate (chain, PEM) and ``DIR/<station>.key`` its private key (PEM, unencrypted); a
station without its ``.pem`` connects without a certificate (the server refuses it if its
profile is 3). ``--client-cert`` / ``--client-key`` give every station the same pair: the
server binds the certificate's CN to the station, so that is for one station, or for showing
that the others are refused.
"""

from __future__ import annotations

import base64
import os
import ssl

import msgspec

__all__ = ["Credentials", "StationKeys", "read_passwords"]

STATION_PLACEHOLDER = "{station}"
"""In ``--password``, replaced by each station's identity (one password per station)."""


class Credentials(msgspec.Struct, frozen=True, kw_only=True):
    """What the stations authenticate with; all optional (nothing: profile 0 over ``ws://``)."""

    password: str | None = None
    """Every station's Basic password; ``{station}`` in it is replaced by the identity."""
    passwords: dict[str, str] | None = None
    """Per-station Basic passwords (from ``--passwords FILE``); stations not in it send no
    credentials unless ``password`` gives them one."""
    tls: bool = False
    """Speak TLS (the URL is ``wss://``)."""
    ca_file: str | None = None
    """PEM CA(s) the server's certificate must chain to; ``None``: the system's CAs."""
    server_name: str | None = None
    """The name the server's certificate must carry; ``None``: the URL's host."""
    client_cert_dir: str | None = None
    client_cert: str | None = None
    client_key: str | None = None


def read_passwords(path: str) -> dict[str, str]:
    """Station passwords from a file of ``STATION PASSWORD`` lines (whitespace between, blank
    lines and ``#`` comments ignored). ``OSError`` when unreadable, ``ValueError`` naming the
    line when one is not two fields."""
    passwords: dict[str, str] = {}
    with open(path, encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            text = line.strip()
            if not text or text.startswith("#"):
                continue
            fields = text.split()
            if len(fields) != 2:
                raise ValueError(f"{path}:{number}: expected STATION PASSWORD")
            passwords[fields[0]] = fields[1]
    return passwords


class StationKeys:
    """A worker's view of :class:`Credentials`: per station, its ``Authorization`` header and
    its TLS context. Unreadable CA or certificate files raise ``OSError`` / ``ssl.SSLError``
    (the command checks them before a run starts, with :meth:`check`)."""

    def __init__(self, credentials: Credentials) -> None:
        self.credentials = credentials
        self._shared: ssl.SSLContext | None = None

    def headers(self, station: str) -> list[tuple[str, str]]:
        """HTTP Basic with the station's password (username: its identity), or nothing."""
        credentials = self.credentials
        password = (credentials.passwords or {}).get(station)
        if password is None and credentials.password is not None:
            password = credentials.password.replace(STATION_PLACEHOLDER, station)
        if password is None:
            return []
        token = base64.b64encode(f"{station}:{password}".encode()).decode("ascii")
        return [("Authorization", f"Basic {token}")]

    def ssl_context(self, station: str) -> ssl.SSLContext | None:
        """The station's TLS context, or ``None`` for ``ws://``."""
        credentials = self.credentials
        if not credentials.tls:
            return None
        pair = self._certificate(station)
        if pair is None:
            if self._shared is None:
                self._shared = self._context()
            return self._shared
        context = self._context()
        context.load_cert_chain(*pair)
        return context

    def check(self, station: str) -> None:
        """Build ``station``'s context once, so that a bad file fails before the run."""
        self.ssl_context(station)

    def _certificate(self, station: str) -> tuple[str, str] | None:
        credentials = self.credentials
        if credentials.client_cert is not None:
            return credentials.client_cert, credentials.client_key or credentials.client_cert
        if credentials.client_cert_dir is not None:
            certificate = os.path.join(credentials.client_cert_dir, f"{station}.pem")
            if os.path.exists(certificate):
                return certificate, os.path.join(credentials.client_cert_dir, f"{station}.key")
        return None

    def _context(self) -> ssl.SSLContext:
        return ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=self.credentials.ca_file)
