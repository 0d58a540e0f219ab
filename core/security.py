"""Station authentication: OCPP security profiles 1-3, station passwords, the TLS context, and
the decision whether a handshake may open a session (docs/security.md).

The decision (:func:`admit`) is a pure function of what the connection showed
(:class:`Transport`), the station's registration and its credentials; the gateway gathers the
first (:func:`transport_of`), runs the decision off the trio thread (a password check costs
tens of milliseconds on purpose) and records the outcome: ``SessionOpened`` with how the
station authenticated, or ``HandshakeRejected`` with one of :data:`REFUSAL_CAUSES`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import ipaddress
import secrets
import ssl
import string
from collections.abc import Callable, Sequence
from typing import Literal
from urllib.parse import unquote

import msgspec
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from chargeledger.core.settings import Settings, TlsSettings
from chargeledger.projections.registry import Credentials

__all__ = [
    "OCPP_CIPHERS",
    "PASSWORD_LENGTH",
    "REFUSAL_CAUSES",
    "Admitted",
    "Refused",
    "Transport",
    "admit",
    "check_password",
    "generate_password",
    "hash_password",
    "server_ssl_context",
    "transport_of",
    "verify_password",
]

PASSWORD_LENGTH = (16, 40)
"""The shortest and longest station password, in characters (OCPP 2.0.1 ``passwordString``,
1.6 security whitepaper)."""

OCPP_CIPHERS = ":".join(
    (
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        "ECDHE-RSA-AES128-GCM-SHA256",
        "ECDHE-RSA-AES256-GCM-SHA384",
        "AES128-GCM-SHA256",
        "AES256-GCM-SHA384",
    )
)
"""The TLS 1.2 cipher suites OCPP 2.0.1 part A (A00.FR.318/319) and the 1.6 security
whitepaper require of a CSMS, in OpenSSL's names; TLS 1.3 suites are OpenSSL's defaults."""

REFUSAL_CAUSES = {
    "unknown_station": "the station is not registered (registration = registered_only)",
    "disabled": "the station's registration is disabled",
    "no_credentials": "no HTTP Basic credentials, though the station's profile needs them",
    "username_mismatch": "the Basic username is not the station identity",
    "wrong_password": "the Basic password matches neither the current nor a pending one",
    "tls_required": "the station's profile needs TLS and the connection is plain",
    "no_client_certificate": "profile 3 needs a client certificate and none was shown",
    "cn_mismatch": "the client certificate's subject CN is not the station identity",
    "tls_handshake_failed": "the TLS handshake failed (e.g. a certificate not from the CA)",
}
"""Every ``HandshakeRejected.cause`` a security refusal carries, and what it means."""

# argon2id with OWASP's minimum parameters (19 MiB, 2 passes, 1 lane): slow and memory-hard
# enough that a stolen log does not yield chosen passwords cheaply, cheap enough (~30 ms) that a
# reconnect storm of password stations does not queue for minutes (docs/security.md).
_hasher = PasswordHasher(time_cost=2, memory_cost=19456, parallelism=1)


def check_password(password: str) -> None:
    """Raise ``ValueError`` unless ``password`` is 16 to 40 printable ASCII characters."""
    low, high = PASSWORD_LENGTH
    if not low <= len(password) <= high:
        raise ValueError(f"a station password has {low} to {high} characters, not {len(password)}")
    if not all(" " < character <= "~" for character in password):
        raise ValueError("a station password is printable ASCII without spaces")


def hash_password(password: str) -> str:
    """The salted argon2id hash of ``password`` (about 25 ms of CPU: call it off the trio
    thread). ``ValueError`` when the password breaks :func:`check_password`'s rules."""
    check_password(password)
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    """Whether ``password`` is the one ``password_hash`` was made from (as slow as hashing);
    ``False`` for a malformed hash, never an exception."""
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def generate_password() -> str:
    """A fresh random station password: 40 hexadecimal characters (160 bits). Hex because
    OCPP-J 1.6 stations may expect ``AuthorizationKey`` as 20 bytes in hex; it fits 2.0.1's
    ``BasicAuthPassword`` as it is."""
    return "".join(secrets.choice(string.hexdigits[:16]) for _ in range(40))


def server_ssl_context(tls: TlsSettings) -> ssl.SSLContext:
    """The server context for ``wss://``: TLS 1.2 or later, OCPP's cipher suites, and, when
    ``tls.ca_file`` is set, a client certificate asked for (optional: profile 2 stations
    have none) and verified against that CA: a certificate that does not chain to it fails
    the TLS handshake. ``OSError`` / ``ssl.SSLError`` when a file is missing or unreadable."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers(OCPP_CIPHERS)
    context.load_cert_chain(tls.cert_file, tls.key_file)
    if tls.ca_file is not None:
        context.load_verify_locations(cafile=tls.ca_file)
        context.verify_mode = ssl.CERT_OPTIONAL
    return context


class Transport(msgspec.Struct, frozen=True, kw_only=True):
    """What a connection showed before its handshake was answered."""

    tls: bool = False
    """It spoke TLS to us, or to a trusted proxy that says so."""
    certificate: bytes | None = None
    """The client certificate (DER) verified by our TLS context or the trusted proxy."""
    username: str | None = None
    password: str | None = None
    """HTTP Basic credentials, when sent."""

    @property
    def fingerprint(self) -> str | None:
        """SHA-256 (hex) of the client certificate."""
        return None if self.certificate is None else hashlib.sha256(self.certificate).hexdigest()

    @property
    def common_name(self) -> str | None:
        """The client certificate's subject CN (the first, if several)."""
        if self.certificate is None:
            return None
        names = x509.load_der_x509_certificate(self.certificate).subject.get_attributes_for_oid(
            NameOID.COMMON_NAME
        )
        return str(names[0].value) if names else None


def _basic(headers: dict[str, str]) -> tuple[str | None, str | None]:
    """Username and password of an ``Authorization: Basic`` header; ``None``s when absent or
    malformed (a malformed header counts as no credentials)."""
    scheme, _, encoded = headers.get("authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return None, None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None, None
    username, colon, password = decoded.partition(":")
    return (username, password) if colon else (None, None)


def _trusted(remote_host: str | None, proxies: Sequence[str]) -> bool:
    if not remote_host or not proxies:
        return False
    try:
        address = ipaddress.ip_address(remote_host)
    except ValueError:
        return False
    return any(address in ipaddress.ip_network(proxy, strict=False) for proxy in proxies)


def transport_of(
    raw_headers: Sequence[tuple[bytes, bytes]],
    remote_host: str | None,
    peer_certificate: bytes | None,
    tls: bool,
    settings: Settings,
) -> Transport:
    """What the connection showed: TLS and its client certificate (``peer_certificate``, DER,
    already verified by our TLS context), HTTP Basic credentials from ``raw_headers``.

    A connection from one of ``settings.trusted_proxies`` may instead say that the station
    spoke TLS (``X-Forwarded-Proto: https`` or ``wss``) and forward the client certificate it
    verified in ``settings.client_cert_header`` (URL-encoded PEM). The same headers from any
    other address are ignored; an unparsable forwarded certificate counts as none."""
    headers = {
        name.decode("latin-1").lower(): value.decode("latin-1") for name, value in raw_headers
    }
    username, password = _basic(headers)
    certificate = peer_certificate
    if _trusted(remote_host, settings.trusted_proxies):
        forwarded = headers.get("x-forwarded-proto", "").lower()
        tls = tls or forwarded in ("https", "wss")
        pem = (
            headers.get(settings.client_cert_header.lower(), "")
            if settings.client_cert_header
            else ""
        )
        if pem:
            try:
                cert = x509.load_pem_x509_certificate(unquote(pem).encode())
                certificate = cert.public_bytes(Encoding.DER)
            except ValueError:
                certificate = None
    return Transport(tls=tls, certificate=certificate, username=username, password=password)


class Admitted(msgspec.Struct, frozen=True, kw_only=True):
    """The handshake may open a session: how the station authenticated and the security
    profile the connection meets (recorded on ``SessionOpened``)."""

    auth: Literal["none", "basic", "client-certificate"]
    profile: int
    credential: Literal["", "current", "pending"] = ""


class Refused(msgspec.Struct, frozen=True, kw_only=True):
    """The handshake is refused: ``status`` is all the peer learns (401 until it proved its
    identity, 403 after), ``cause`` and ``reason`` are recorded."""

    status: int
    cause: str
    reason: str


def _refuse(cause: str, detail: str = "", status: int = 401) -> Refused:
    return Refused(status=status, cause=cause, reason=detail or REFUSAL_CAUSES[cause])


def admit(
    station: str,
    transport: Transport,
    *,
    registered: bool,
    profile: int,
    enabled: bool,
    credentials: Credentials,
    open_registration: bool,
    verify: Callable[[str, str], bool] = verify_password,
) -> Admitted | Refused:
    """Decide whether ``station`` may connect over ``transport``.

    ``registered``, ``profile`` (the lowest it may use), ``enabled`` and ``credentials`` come
    from the registry. Rules, in order:

    * an unknown station is refused (``unknown_station``) unless ``open_registration``, in
      which case it is admitted with whatever it showed, as before registration existed;
    * a client certificate, when shown, must name the station (``cn_mismatch``): nobody
      claims a station with another station's certificate, whatever the profile;
    * profile 2 and 3 need TLS (``tls_required``), profile 3 a certificate
      (``no_client_certificate``); a matching certificate over TLS satisfies any profile;
    * profile 1 and 2 need Basic with the station identity as username and the current or
      the pending password (``no_credentials``, ``username_mismatch``, ``wrong_password``);
      a password sent to a profile 0 station that has one is checked too: a wrong password
      is never ignored;
    * a disabled station is refused (``disabled``, 403) only after it proved its identity.

    Every refusal before the identity is proven is a 401, so the answer tells a prober
    nothing about which stations exist. ``verify`` checks a password against a hash (slow)."""
    certificate_cn = transport.common_name
    if certificate_cn is not None and certificate_cn != station:
        return _refuse(
            "cn_mismatch", f"client certificate CN {certificate_cn!r} is not {station!r}"
        )
    if not registered:
        if not open_registration:
            return _refuse("unknown_station")
        return Admitted(auth="none", profile=0)
    if profile >= 2 and not transport.tls:
        return _refuse("tls_required", f"security profile {profile} needs TLS")
    admitted: Admitted
    if certificate_cn is not None and transport.tls:
        admitted = Admitted(auth="client-certificate", profile=3)
    elif profile >= 3:
        return _refuse("no_client_certificate")
    elif transport.username is None or (profile == 0 and credentials == Credentials()):
        if profile >= 1:
            return _refuse("no_credentials")
        admitted = Admitted(auth="none", profile=0)
    elif transport.username != station:
        return _refuse(
            "username_mismatch", f"Basic username {transport.username!r} is not {station!r}"
        )
    else:
        password = transport.password or ""
        if credentials.current is not None and verify(credentials.current, password):
            credential: Literal["current", "pending"] = "current"
        elif credentials.pending is not None and verify(credentials.pending, password):
            credential = "pending"
        else:
            return _refuse("wrong_password")
        admitted = Admitted(auth="basic", profile=2 if transport.tls else 1, credential=credential)
    if not enabled:
        return _refuse("disabled", status=403)
    return admitted
