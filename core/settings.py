"""Server settings: small frozen value objects, read from a TOML file, the environment and
the command line (in rising precedence)."""

from __future__ import annotations

import ipaddress
import os
import socket
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec

__all__ = [
    "ApiKey",
    "ApiRole",
    "BootPolicy",
    "CertificateSigning",
    "Settings",
    "TlsSettings",
    "is_loopback",
    "load_settings",
]

DEFAULT_STORE = "sqlite:///chargeledger.db"


class BootPolicy(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """How BootNotification is answered.

    ``status`` is the answer for stations not listed elsewhere; ``accepted`` / ``rejected``
    name stations that always get that answer, ``pending`` stations that get Pending. A
    station answered Pending is accepted once the provisioning plugin has configured it
    (``[plugins.provisioning] pending_configuration``, see docs/ocpp201.md). ``interval`` is
    the heartbeat interval sent with Accepted, ``retry_interval`` the one sent with Pending /
    Rejected.
    ``unbooted_calls``: what a station that never had an accepted boot gets for any other
    CALL: ``reject`` (CALLERROR SecurityError, as OCPP 2.0.1 B02/B03 prescribe) or
    ``allow`` (lenient, for 1.6 fleets that reconnect without booting).
    """

    status: Literal["Accepted", "Pending", "Rejected"] = "Accepted"
    interval: int = 300
    retry_interval: int = 60
    accepted: list[str] = []
    rejected: list[str] = []
    pending: list[str] = []
    unbooted_calls: Literal["reject", "allow"] = "reject"


ApiRole = Literal["read", "operator", "admin"]
"""HTTP API roles, each allowed what the previous one is: ``read`` (billing, auditors),
``operator`` (commands to stations), ``admin`` (station registration)."""


class ApiKey(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One HTTP API key: who holds it, its role, and the SHA-256 (hex) of the key; the key
    itself is never stored (``chargeledger api-key`` makes one)."""

    name: str
    role: ApiRole
    sha256: Annotated[str, msgspec.Meta(pattern="^[0-9a-f]{64}$")]


class TlsSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """TLS for station connections (security profiles 2 and 3; docs/security.md).

    ``cert_file`` / ``key_file``: the server's certificate chain and private key (PEM).
    ``ca_file``: the operator CA (PEM) that station client certificates must chain to; without
    it no client certificate is asked for, so no station can use profile 3. ``port``: where
    ``wss://`` is served; ``None`` makes the gateway's own ``port`` speak TLS only, a number
    serves ``wss://`` there and leaves ``port`` plain ``ws://`` (for profile 1 stations)."""

    cert_file: str
    key_file: str
    ca_file: str | None = None
    port: int | None = None


class CertificateSigning(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """How station CSRs (SignCertificate) are signed by the built-in signer of the
    ``certificates`` plugin: with the operator sub-CA whose PEM certificate and unencrypted
    PEM private key are the files ``ca_certificate`` and ``ca_key`` (read once per process;
    keep the key file readable by the server only). ``chain``: a PEM file of the further CA
    certificates up to (not including) the root, appended to the chain sent to the station.
    Without ``ca_certificate`` and ``ca_key`` the built-in signer signs nothing (a plugin's
    ``chargeledger_sign_certificate`` may). Certificates are valid from the time the CSR
    was answered for ``validity_days``."""

    ca_certificate: str | None = None
    ca_key: str | None = None
    chain: str | None = None
    validity_days: int = 365


def is_loopback(host: str) -> bool:
    """Whether listening on ``host`` is reachable from this machine only (``localhost`` or a
    loopback address); any other name is assumed reachable from elsewhere."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Settings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Everything the server is told. Defaults are the documented defaults."""

    host: str = "127.0.0.1"
    port: int = 9000
    store: str = DEFAULT_STORE
    node: str = ""
    """This node's stable id, recorded on the sessions it opens and the commands it sends;
    by default the host name, resolved when the settings are made (not the port: a restart
    on another port is the same node). Give each node sharing a store a name of its own."""
    max_frame_bytes: int = 65536
    ping_interval: float = 30.0
    ping_timeout: float = 10.0
    call_timeout: float = 30.0
    outbound_queue: int = 32
    # -- limits: what no station or attacker may exhaust (docs/operations.md, "Limits") ------
    handshake_timeout: float = 10.0
    """Seconds from accepting a connection to its completed WebSocket upgrade, TLS included;
    a connection still not upgraded then is closed (counted, not recorded)."""
    max_connections: int = 0
    """Connections held at once, handshakes included; beyond it a new one is answered 503
    with Retry-After (recorded). 0: the open-file limit less 256 descriptors for the rest."""
    max_connections_per_address: int = 0
    """Connections held at once from one remote address (beyond: 503, recorded); 0: no limit,
    the default, because NAT, load balancers and proxies put many stations behind one."""
    max_handshakes: int = 1024
    """Handshakes in flight (accepted, not yet upgraded); beyond: 503 with Retry-After
    (recorded), so that a reconnect storm is spread out rather than collapsing the server."""
    busy_retry_after: int = 10
    """The Retry-After (seconds) of those 503 answers."""
    max_frames_per_second: float = 100.0
    """Frames a station may send per second, on average (bursts of as many); beyond: closed
    with 1008, recorded. 0: no limit."""
    max_pings_per_second: float = 5.0
    """WebSocket pings a station may send per second, as for frames (1008 beyond; 0: none)."""
    retransmission_calls: int = 32
    """Answered CALLs remembered per station to answer verbatim retransmissions."""
    retransmission_station_bytes: int = 128 * 1024
    """What one station's remembered CALLs may cost (texts plus overhead), in bytes."""
    retransmission_total_bytes: int = 128 * 1024 * 1024
    """What all stations' remembered CALLs may cost together; beyond, the least recently
    used stations' windows are dropped."""
    retransmission_release_after: float = 3600.0
    """Seconds after which the window of a station that has not reconnected is dropped."""
    node_timeout: float = 900.0
    """At startup, sessions another node left open are closed when none of that node's open
    sessions recorded anything (an inbound frame, its opening) for this long; keep it above
    the heartbeat interval (``[boot] interval``). With a PostgreSQL store (several nodes,
    docs/cluster.md) nodes have heartbeats instead: a running node releases the sessions of a
    node whose heartbeat (``heartbeat_interval``) stopped this long ago, and a node starting
    closes only its own."""
    heartbeat_interval: float = 5.0
    """With a PostgreSQL store: seconds between this node's heartbeats (a row of
    ``chargeledger_nodes``), and between its looks for dead nodes. A command routed to a node
    silent for three intervals fails at once with ``StationOffline`` (docs/cluster.md)."""
    no_subprotocol: Literal["reject", "ocpp1.6", "ocpp2.0.1"] = "ocpp1.6"
    """What a station that offers no Sec-WebSocket-Protocol gets: refused, or treated as
    speaking the named version (the default: many 1.6 stations in the field send none)."""
    disabled_plugins: list[str] = []
    plugin_modules: list[str] = []
    """Importable modules to load as plugins besides built-ins and entry points."""
    boot: BootPolicy = BootPolicy()
    plugins: dict[str, dict[str, Any]] = {}
    """Free-form options per plugin name, for plugins of platform teams."""
    api_port: int | None = None
    """Port of the HTTP API (0: any free port); ``None``: no HTTP API."""
    api_host: str = "127.0.0.1"
    api_keys: list[ApiKey] = []
    """Without keys the API serves everyone as ``admin``: allowed on loopback only."""
    # -- station security (docs/security.md) -------------------------------------------------
    registration: Literal["registered_only", "open"] | None = None
    """Who may connect: only registered stations, or anyone (unknown stations get the boot
    policy's answer). ``None``: ``open`` when ``host`` is a loopback address, else
    ``registered_only``; resolved when the settings are made."""
    tls: TlsSettings | None = None
    trusted_proxies: list[str] = []
    """Addresses or networks (``10.0.0.0/8``) of TLS-terminating proxies. Only a connection
    from one of them may say, in its headers, that the station spoke TLS
    (``X-Forwarded-Proto: https``) and which client certificate it showed
    (``client_cert_header``). Empty (the default): those headers are ignored."""
    client_cert_header: str | None = None
    """The header in which a trusted proxy forwards the station's verified client certificate
    (URL-encoded PEM, as nginx's ``$ssl_client_escaped_cert``); ``None``: not read."""
    allow_insecure: bool = False
    """Allow ``open`` registration on a non-loopback ``host`` (anyone reachable may connect as
    any station): for test benches only."""
    certificate_signing: CertificateSigning = CertificateSigning()
    """``[certificate_signing]``: the operator sub-CA that signs station CSRs."""
    # -- authorization: the ID-token registry (docs/authorization.md) ------------------------
    unknown_tokens: Literal["reject", "accept"] | None = None
    """What a token that is neither registered nor in ``[plugins.authorization]`` gets:
    ``reject`` (1.6 ``Invalid``, 2.0.1 ``Unknown``) or ``accept`` (open sites). ``None``:
    ``reject`` while any token is registered, ``accept`` while the registry is empty."""
    authorization_cache_max_seconds: float | None = None
    """The longest a station may cache an answer: the ``expiryDate`` /
    ``cacheExpiryDateTime`` sent is the earlier of the token's expiry and the CALL's time plus
    this. ``None``: no maximum (only the token's expiry is sent, when it has one)."""
    blocked_while_charging: Literal["station", "remote_stop"] = "station"
    """When a token is registered Blocked, Expired or Invalid while it charges: ``station``
    leaves the transaction to the station (it sees the status at its next CALL carrying the
    token, and stops per ``StopTransactionOnInvalidId`` / ``StopTxOnInvalidId``);
    ``remote_stop`` also sends RemoteStopTransaction / RequestStopTransaction (recorded)."""
    drain_timeout: float = 30.0
    """How long a drain (``chargeledger drain``, SIGTERM) waits for a session to be idle (no
    frame being answered, no CALL of ours outstanding) before it closes it anyway."""
    archives: list[str] = []
    """Archive files (``chargeledger archive``, in any order) folded with the store at
    startup, merged by position, so that the live views are what they were before
    archiving."""

    def __post_init__(self) -> None:
        if not self.node:
            msgspec.structs.force_setattr(self, "node", socket.gethostname())
        if self.registration is None:
            policy = "open" if is_loopback(self.host) else "registered_only"
            msgspec.structs.force_setattr(self, "registration", policy)
        if self.registration == "open" and not is_loopback(self.host) and not self.allow_insecure:
            raise ValueError(
                f"host {self.host!r} is not a loopback address and registration is 'open': any "
                "client could connect as any station without credentials (use registration = "
                '"registered_only", or allow_insecure = true / --allow-insecure for a test bench)'
            )
        for network in self.trusted_proxies:
            ipaddress.ip_network(network, strict=False)  # ValueError names the bad entry
        if self.api_port is not None and not self.api_keys and not is_loopback(self.api_host):
            raise ValueError(
                f"api_host {self.api_host!r} is not a loopback address and no api_keys are "
                "configured: the HTTP API would be open to anyone (make a key with "
                "`chargeledger api-key --name NAME --role ROLE`)"
            )


def load_settings(
    config_file: str | Path | None = None,
    environ: dict[str, str] | None = None,
    **overrides: Any,
) -> Settings:
    """Settings from ``config_file`` (TOML, same keys as :class:`Settings`), then the
    ``CHARGELEDGER_*`` environment variables (``STORE``, ``HOST``, ``PORT``,
    ``DISABLED_PLUGINS`` comma-separated, ``API_HOST``, ``API_PORT``), then ``overrides``
    whose value is not ``None``.

    Raises ``ValueError`` naming the offending key when a value has the wrong type.
    """
    env = os.environ if environ is None else environ
    data: dict[str, Any] = {}
    if config_file is not None:
        data.update(tomllib.loads(Path(config_file).read_text()))
    if "CHARGELEDGER_STORE" in env:
        data["store"] = env["CHARGELEDGER_STORE"]
    if "CHARGELEDGER_HOST" in env:
        data["host"] = env["CHARGELEDGER_HOST"]
    if "CHARGELEDGER_PORT" in env:
        data["port"] = int(env["CHARGELEDGER_PORT"])
    if "CHARGELEDGER_API_HOST" in env:
        data["api_host"] = env["CHARGELEDGER_API_HOST"]
    if "CHARGELEDGER_API_PORT" in env:
        data["api_port"] = int(env["CHARGELEDGER_API_PORT"])
    if "CHARGELEDGER_DISABLED_PLUGINS" in env:
        data["disabled_plugins"] = [
            name.strip() for name in env["CHARGELEDGER_DISABLED_PLUGINS"].split(",") if name.strip()
        ]
    data.update({key: value for key, value in overrides.items() if value is not None})
    try:
        return msgspec.convert(data, Settings)
    except msgspec.ValidationError as exc:
        raise ValueError(f"invalid settings: {exc}") from None
