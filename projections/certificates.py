"""The certificate projection: per station, the certificates it holds, the CSRs it sent, the
certificates we signed for it and the deletions it confirmed (OCPP 2.0.1 A02/A03 and M, the
1.6 security extension, and 1.6 Plug & Charge over DataTransfer).

Also the one definition of how 1.6 carries Plug & Charge (the OCA application note "Using ISO
15118 Plug & Charge with OCPP 1.6"): a ``DataTransfer`` with vendor id
:data:`PNC_VENDOR_ID`, the 2.0.1 action as ``messageId`` and the 2.0.1 payload as JSON text
in ``data``, answered with ``status`` and the 2.0.1 answer as JSON text in ``data``.
:func:`unwrap` turns such an exchange into the 2.0.1 exchange it carries, so that the folds
and plugins written for 2.0.1 serve 1.6 stations too; :func:`wrap` is the way back.

Also the pure certificate reading both the projection and the ``certificates`` plugin need
(one definition each): :func:`csr_problem` (why a CSR may not be signed for a station),
:func:`certificate_hash` (OCPP ``CertificateHashDataType`` of a certificate) and
:func:`read_chain` (the certificates of a PEM chain). Nothing here raises on a station's bad
PEM: an unreadable certificate is recorded as such.
"""

from __future__ import annotations

import contextlib
from operator import attrgetter
from typing import Any, ClassVar

import msgspec
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509 import ocsp
from cryptography.x509.oid import NameOID

from chargeledger.core.events import Recorded
from chargeledger.core.times import rfc3339
from chargeledger.projections.exchanges import (
    ErrorAnswer,
    Exchange,
    ExchangeFold,
    Kind,
    as_dict,
    as_list,
    as_str,
    is_v16,
)
from chargeledger.schemas import OCPP201

__all__ = [
    "MAX_HISTORY_PER_STATION",
    "MIN_RSA_BITS",
    "PNC_VENDOR_ID",
    "CertificateHash",
    "CertificatesProjection",
    "CsrReceived",
    "Deletion",
    "InstalledCertificate",
    "SignedCertificate",
    "StationCertificates",
    "certificate_hash",
    "certificates_json",
    "common_name",
    "csr_problem",
    "keep_latest",
    "read_chain",
    "unwrap",
    "wrap",
]

MAX_HISTORY_PER_STATION = 64
"""CSRs, signed certificates and deletions kept per station, each (the oldest is forgotten
first): a station flooding SignCertificate must not grow memory without bound."""


class CertificateHash(msgspec.Struct, frozen=True, kw_only=True):
    """OCPP ``CertificateHashDataType``: how a station names an installed certificate."""

    hash_algorithm: str
    issuer_name_hash: str
    issuer_key_hash: str
    serial_number: str

    @classmethod
    def from_wire(cls, value: Any) -> CertificateHash | None:
        """From the wire's ``certificateHashData`` object; ``None`` when a field is missing."""
        data = as_dict(value)
        fields = [
            as_str(data.get(name))
            for name in ("hashAlgorithm", "issuerNameHash", "issuerKeyHash", "serialNumber")
        ]
        if any(field is None for field in fields):
            return None
        algorithm, name_hash, key_hash, serial = (str(field) for field in fields)
        return cls(
            hash_algorithm=algorithm,
            issuer_name_hash=name_hash.lower(),
            issuer_key_hash=key_hash.lower(),
            serial_number=serial.lower().lstrip("0") or "0",
        )

    def to_wire(self) -> dict[str, str]:
        return {
            "hashAlgorithm": self.hash_algorithm,
            "issuerNameHash": self.issuer_name_hash,
            "issuerKeyHash": self.issuer_key_hash,
            "serialNumber": self.serial_number,
        }

    @property
    def key(self) -> str:
        """One text naming the certificate: ``SHA256:<issuer name>:<issuer key>:<serial>``."""
        return ":".join(
            (self.hash_algorithm, self.issuer_name_hash, self.issuer_key_hash, self.serial_number)
        )


_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "SHA256": hashes.SHA256,
    "SHA384": hashes.SHA384,
    "SHA512": hashes.SHA512,
}


def certificate_hash(
    certificate: x509.Certificate, issuer: x509.Certificate | None = None, algorithm: str = "SHA256"
) -> CertificateHash:
    """The OCPP hash data of ``certificate`` issued by ``issuer`` (itself when ``None``, as
    for the root certificates InstallCertificate installs): the issuer's name and public key
    hashed as OCSP does (RFC 6960 ``CertID``), the serial number in lowercase hex without
    leading zeroes. Raises ``KeyError`` for an algorithm OCPP does not name."""
    request = (
        ocsp.OCSPRequestBuilder()
        .add_certificate(certificate, issuer or certificate, _HASHES[algorithm]())
        .build()
    )
    return CertificateHash(
        hash_algorithm=algorithm,
        issuer_name_hash=request.issuer_name_hash.hex(),
        issuer_key_hash=request.issuer_key_hash.hex(),
        serial_number=format(certificate.serial_number, "x"),
    )


def common_name(name: x509.Name) -> str | None:
    """The first common name (CN) of ``name``, ``None`` when it has none."""
    found = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    value = found[0].value if found else None
    return value if isinstance(value, str) else None


MIN_RSA_BITS = 2048
"""The smallest RSA key we sign a certificate for (OCPP 2.0.1 A00.FR.309 asks at least as
much of the keys of station certificates)."""


def csr_problem(csr: str, station: str) -> str | None:
    """Why the PEM certificate signing request ``csr`` may not be signed for ``station``;
    ``None`` when it may: it parses, its key is EC or RSA of at least ``MIN_RSA_BITS``, its
    self-signature verifies (the station holds the key) and its subject CN is the station
    identity (a station must not obtain a certificate that lets it connect as another one)."""
    try:
        request = x509.load_pem_x509_csr(csr.encode())
        key = request.public_key()
    except (ValueError, UnsupportedAlgorithm):
        return "not a PEM certificate signing request of a key we can read"
    if isinstance(key, rsa.RSAPublicKey) and key.key_size < MIN_RSA_BITS:
        return f"an RSA key of {key.key_size} bits, below {MIN_RSA_BITS}"
    if not isinstance(key, (rsa.RSAPublicKey, ec.EllipticCurvePublicKey)):
        return f"a {type(key).__name__} key: only EC and RSA keys are signed"
    if not request.is_signature_valid:
        return "the CSR's signature does not verify"
    name = common_name(request.subject)
    if name != station:
        return f"the CSR's subject CN is {name!r}, not the station identity {station!r}"
    return None


def read_chain(pem: str) -> list[x509.Certificate]:
    """The certificates of a PEM chain, leaf first; empty when it holds none or is not PEM."""
    try:
        return x509.load_pem_x509_certificates(pem.encode())
    except ValueError:
        return []


PNC_VENDOR_ID = "org.openchargealliance.iso15118pnc"
"""The DataTransfer vendor id of Plug & Charge over OCPP 1.6 (OCA application note)."""


def wrap(action: str, payload: dict[str, Any]) -> dict[str, Any]:
    """The 1.6 DataTransfer request carrying the 2.0.1 ``action`` request ``payload``."""
    data = msgspec.json.encode(payload).decode()
    return {"vendorId": PNC_VENDOR_ID, "messageId": action, "data": data}


def _json(text: Any) -> Any:
    """The JSON value of ``text``; ``None`` when it is not a string holding JSON."""
    if type(text) is not str:
        return None
    try:
        return msgspec.json.decode(text)
    except (ValueError, RecursionError):
        return None


def unwrap(exchange: Exchange | None) -> Exchange | None:
    """The 2.0.1 exchange a 1.6 Plug & Charge DataTransfer exchange carries: ``action`` the
    ``messageId``, ``request`` the JSON of its ``data`` (``{}`` when unreadable), ``response``
    the JSON of the answer's ``data`` when its ``status`` is ``Accepted`` (``{}`` when
    unreadable); a DataTransfer refused (``Rejected``, ``UnknownVendorId``, ...) carries no
    2.0.1 answer and is unwrapped as a CALLERROR would be (``response`` ``None``, ``error``
    its status). ``protocol`` is ``ocpp2.0.1``; a SignCertificate without ``certificateType``
    is the station's ``V2GCertificate`` (the only one it signs over DataTransfer). ``None``
    for every other exchange."""
    if exchange is None or exchange.action != "DataTransfer" or not is_v16(exchange.protocol):
        return None
    request = as_dict(exchange.request)
    action = as_str(request.get("messageId"))
    if request.get("vendorId") != PNC_VENDOR_ID or action is None:
        return None
    response: Any = None
    error = exchange.error
    if error is None:
        answer = as_dict(exchange.response)
        status = as_str(answer.get("status"))
        if status == "Accepted":
            response = as_dict(_json(answer.get("data")))
        else:
            error = ErrorAnswer(status, f"DataTransfer answered {status}", {})
    inner = as_dict(_json(request.get("data")))
    if action == "SignCertificate":  # over 1.6 it is always the V2G certificate's CSR
        inner = {**inner, "certificateType": inner.get("certificateType", "V2GCertificate")}
    return msgspec.structs.replace(
        exchange,
        protocol=OCPP201,
        action=action,
        request=inner,
        response=response,
        error=error,
    )


class CsrReceived(msgspec.Struct, frozen=True, kw_only=True):
    """A SignCertificate the station sent, and our answer."""

    certificate_type: str | None
    """2.0.1 ``certificateType`` (``ChargingStationCertificate``, ``V2GCertificate``)."""
    common_name: str | None
    """The CSR's subject CN (``None``: absent, or the CSR does not parse)."""
    status: str | None
    """What we answered: ``Accepted`` or ``Rejected``."""
    problem: str | None
    """Why the CSR may not be signed (:func:`csr_problem`), ``None`` when it may."""
    position: int
    """Log position of our answer."""
    at: float


class SignedCertificate(msgspec.Struct, frozen=True, kw_only=True):
    """A certificate chain we sent in CertificateSigned, and the station's answer."""

    certificate_type: str | None
    common_name: str | None
    """The leaf's subject CN."""
    serial_number: str | None
    """The leaf's serial number, lowercase hex (``None``: the chain does not parse)."""
    not_after: float | None
    """The leaf's expiry (UNIX seconds)."""
    issuer: str | None
    """The leaf issuer's CN."""
    status: str | None
    """The station's answer: ``Accepted`` or ``Rejected``."""
    position: int
    at: float


class InstalledCertificate(msgspec.Struct, frozen=True, kw_only=True):
    """A certificate the station holds, as it last told us or as we installed it."""

    certificate_type: str
    hash: CertificateHash
    common_name: str | None
    """Known when we installed it ourselves; ``None`` when only its hash data was reported."""
    source: str
    """``InstallCertificate`` or ``GetInstalledCertificateIds``."""
    position: int
    at: float


class Deletion(msgspec.Struct, frozen=True, kw_only=True):
    """A DeleteCertificate and the station's answer (``Accepted``, ``Failed``, ``NotFound``)."""

    hash: CertificateHash | None
    status: str | None
    position: int
    at: float


class StationCertificates(msgspec.Struct, kw_only=True):
    """One station's certificates. Read-only for everyone but the projection."""

    station: str
    installed: dict[str, InstalledCertificate] = {}
    """By :attr:`CertificateHash.key`."""
    csrs: list[CsrReceived] = []
    signed: list[SignedCertificate] = []
    deletions: list[Deletion] = []


def keep_latest(history: list[Any], item: Any) -> None:
    """Append ``item`` to a station's ``history``, forgetting the oldest beyond
    ``MAX_HISTORY_PER_STATION``."""
    history.append(item)
    if len(history) > MAX_HISTORY_PER_STATION:
        del history[0]


class CertificatesProjection(ExchangeFold):
    """Certificates folded from the exchanges closed by a CALLRESULT (see
    ``docs/projections.md``):

    * ``SignCertificate`` (station to us): a :class:`CsrReceived`;
    * ``CertificateSigned`` (us to the station): a :class:`SignedCertificate`;
    * ``InstallCertificate`` answered ``Accepted``: the certificate is installed;
    * ``DeleteCertificate``: a :class:`Deletion`; ``Accepted`` or ``NotFound`` removes it;
    * ``GetInstalledCertificateIds``: the station's list replaces what we held for the types
      asked (every type when the 2.0.1 request named none); ``NotFound`` empties them.
    """

    CONCERNS: ClassVar[frozenset[Kind]] = frozenset(
        {
            "SignCertificate",
            "CertificateSigned",
            "InstallCertificate",
            "DeleteCertificate",
            "GetInstalledCertificateIds",
            "DataTransfer",
        }
    )
    """What the fold reads (:func:`~chargeledger.projections.exchanges.routed_to`): ``Views``
    folds no other event into it."""

    def __init__(self) -> None:
        super().__init__()
        self._stations: dict[str, StationCertificates] = {}

    def get(self, station: str) -> StationCertificates | None:
        """The station's certificates, ``None`` when no certificate exchange was seen."""
        return self._stations.get(station)

    def all(self) -> list[StationCertificates]:
        """Every station with certificate exchanges, sorted by station id."""
        return sorted(self._stations.values(), key=attrgetter("station"))

    def _state(self, station: str) -> StationCertificates:
        state = self._stations.get(station)
        if state is None:
            state = self._stations[station] = StationCertificates(station=station)
        return state

    def fold(self, recorded: Recorded, exchange: Exchange | None) -> None:
        """Fold the next event, given the exchange it completes (a 1.6 Plug & Charge
        DataTransfer as the 2.0.1 exchange it carries; one the station refused, not at all)."""
        inner = unwrap(exchange)
        if inner is not None:
            exchange = inner if inner.error is None else None
        if exchange is None or type(exchange.request) is not dict:
            return
        response = as_dict(exchange.response)
        status = as_str(response.get("status"))
        origin, action = exchange.origin, exchange.action
        if origin == "in" and action == "SignCertificate":
            self._csr(exchange, status)
        elif origin != "out":
            return
        elif action == "CertificateSigned":
            self._signed(exchange, status)
        elif action == "InstallCertificate" and status == "Accepted":
            self._installed(exchange)
        elif action == "DeleteCertificate":
            hash_data = CertificateHash.from_wire(exchange.request.get("certificateHashData"))
            state = self._state(exchange.station)
            deletion = Deletion(
                hash=hash_data, status=status, position=exchange.result_position, at=exchange.at
            )
            keep_latest(state.deletions, deletion)
            if hash_data is not None and status in ("Accepted", "NotFound"):
                state.installed.pop(hash_data.key, None)
        elif action == "GetInstalledCertificateIds" and status in ("Accepted", "NotFound"):
            self._reported(exchange, response)

    def _csr(self, exchange: Exchange, status: str | None) -> None:
        csr = as_str(exchange.request.get("csr")) or ""
        name = None
        with contextlib.suppress(ValueError):
            name = common_name(x509.load_pem_x509_csr(csr.encode()).subject)
        keep_latest(
            self._state(exchange.station).csrs,
            CsrReceived(
                certificate_type=as_str(exchange.request.get("certificateType")),
                common_name=name,
                status=status,
                problem=csr_problem(csr, exchange.station),
                position=exchange.result_position,
                at=exchange.at,
            ),
        )

    def _signed(self, exchange: Exchange, status: str | None) -> None:
        chain = read_chain(as_str(exchange.request.get("certificateChain")) or "")
        leaf = chain[0] if chain else None
        keep_latest(
            self._state(exchange.station).signed,
            SignedCertificate(
                certificate_type=as_str(exchange.request.get("certificateType")),
                common_name=None if leaf is None else common_name(leaf.subject),
                serial_number=None if leaf is None else format(leaf.serial_number, "x"),
                not_after=None if leaf is None else leaf.not_valid_after_utc.timestamp(),
                issuer=None if leaf is None else common_name(leaf.issuer),
                status=status,
                position=exchange.result_position,
                at=exchange.at,
            ),
        )

    def _installed(self, exchange: Exchange) -> None:
        certificate_type = as_str(exchange.request.get("certificateType")) or ""
        chain = read_chain(as_str(exchange.request.get("certificate")) or "")
        if not chain:
            return  # the station accepted what we cannot read: its next report will say
        leaf = chain[0]
        hash_data = certificate_hash(leaf, chain[1] if len(chain) > 1 else None)
        self._state(exchange.station).installed[hash_data.key] = InstalledCertificate(
            certificate_type=certificate_type,
            hash=hash_data,
            common_name=common_name(leaf.subject),
            source="InstallCertificate",
            position=exchange.result_position,
            at=exchange.at,
        )

    def _reported(self, exchange: Exchange, response: dict[str, Any]) -> None:
        reported: list[tuple[str, Any]]
        if is_v16(exchange.protocol):
            asked_type = as_str(exchange.request.get("certificateType")) or ""
            asked: set[str] | None = {asked_type}
            reported = [(asked_type, item) for item in as_list(response.get("certificateHashData"))]
        else:
            types = [as_str(t) for t in as_list(exchange.request.get("certificateType"))]
            asked = {t for t in types if t is not None} or None
            reported = [
                (as_str(as_dict(chain).get("certificateType")) or "", chain)
                for chain in as_list(response.get("certificateHashDataChain"))
            ]
        state = self._state(exchange.station)
        known = state.installed
        state.installed = {
            key: held
            for key, held in known.items()
            if asked is not None and held.certificate_type not in asked
        }
        for certificate_type, item in reported:
            data = item if is_v16(exchange.protocol) else as_dict(item).get("certificateHashData")
            hash_data = CertificateHash.from_wire(data)
            if hash_data is None:
                continue
            earlier = known.get(hash_data.key)
            state.installed[hash_data.key] = InstalledCertificate(
                certificate_type=certificate_type,
                hash=hash_data,
                common_name=None if earlier is None else earlier.common_name,
                source="GetInstalledCertificateIds",
                position=exchange.result_position,
                at=exchange.at,
            )


def _when(at: float | None) -> str | None:
    return None if at is None else rfc3339(at)


def _hash_json(hash_data: CertificateHash | None) -> dict[str, str] | None:
    return None if hash_data is None else hash_data.to_wire()


def certificates_json(state: StationCertificates) -> dict[str, Any]:
    """``state`` as JSON-ready builtins with stable keys (documented in
    ``docs/projections.md``)."""
    return {
        "station": state.station,
        "installed": [
            {
                "certificate_type": held.certificate_type,
                "hash": _hash_json(held.hash),
                "common_name": held.common_name,
                "source": held.source,
                "position": held.position,
                "at": rfc3339(held.at),
            }
            for _, held in sorted(state.installed.items())
        ],
        "csrs": [
            {
                "certificate_type": csr.certificate_type,
                "common_name": csr.common_name,
                "status": csr.status,
                "problem": csr.problem,
                "position": csr.position,
                "at": rfc3339(csr.at),
            }
            for csr in state.csrs
        ],
        "signed": [
            {
                "certificate_type": signed.certificate_type,
                "common_name": signed.common_name,
                "serial_number": signed.serial_number,
                "not_after": _when(signed.not_after),
                "issuer": signed.issuer,
                "status": signed.status,
                "position": signed.position,
                "at": rfc3339(signed.at),
            }
            for signed in state.signed
        ],
        "deletions": [
            {
                "hash": _hash_json(deletion.hash),
                "status": deletion.status,
                "position": deletion.position,
                "at": rfc3339(deletion.at),
            }
            for deletion in state.deletions
        ],
    }
