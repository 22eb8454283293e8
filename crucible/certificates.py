"""The federation's certificates: a CA, issued identities, and reading them back.

Identity in Crucible is the peer certificate. Its subject carries the organization
(``O``, also the ``CN``) and the role (``OU``: participant, operator or aggregator); a
certificate for a server also names its DNS names and IP addresses. Services read
identity and role from the verified peer certificate on every call; nothing in a
payload can claim them.

What this module does not do: revocation lists or OCSP. A revoked identity is removed
by issuing from a new CA (services check every call against the CA file as it is now,
see :func:`trust_problem`), or by dropping the organization from the run.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from crucible.errors import InputError

ROLES = ("participant", "operator", "aggregator")
CA_CERT = "ca.crt"
CA_KEY = "ca.key"


@dataclass(frozen=True)
class Identity:
    """Who a peer is, as its verified certificate says."""

    organization: str
    role: str
    fingerprint: str


@dataclass(frozen=True)
class IssuedFiles:
    certificate: Path
    key: Path
    ca: Path


def _write_private(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(data)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def init_ca(
    directory: Path, *, name: str = "crucible-federation", days: int = 3650
) -> Path:
    """Create a federation CA in ``directory`` (``ca.crt``, ``ca.key``); keep existing."""
    cert_path = directory / CA_CERT
    if cert_path.exists():
        return cert_path
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_now() - dt.timedelta(minutes=5))
        .not_valid_after(_now() + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    _write_private(
        directory / CA_KEY,
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    return cert_path


def issue(
    directory: Path,
    name: str,
    *,
    role: str,
    dns_names: list[str] | None = None,
    ip_addresses: list[str] | None = None,
    days: int = 365,
    not_before: dt.datetime | None = None,
    out: Path | None = None,
) -> IssuedFiles:
    """Issue a certificate for organization ``name`` with ``role``, signed by the CA.

    Writes ``NAME.crt`` and ``NAME.key`` into ``out`` (default: the CA's directory) and
    copies nothing else; the CA certificate stays where it is.
    """
    if role not in ROLES:
        raise InputError(f"role: expected one of {list(ROLES)}, found {role!r}")
    if not name or any(c in name for c in '/\\,=+<>#;"') or name != name.strip():
        raise InputError(
            f"name: expected an organization name of letters, digits, '-', '_' or '.', "
            f"found {name!r}"
        )
    ca_cert = x509.load_pem_x509_certificate((directory / CA_CERT).read_bytes())
    ca_key = serialization.load_pem_private_key((directory / CA_KEY).read_bytes(), None)
    key = ec.generate_private_key(ec.SECP256R1())
    start = not_before or (_now() - dt.timedelta(minutes=5))
    alt_names: list[x509.GeneralName] = [x509.DNSName(d) for d in dns_names or []]
    alt_names += [x509.IPAddress(ipaddress.ip_address(i)) for i in ip_addresses or []]
    if not alt_names:
        alt_names = [x509.DNSName(name)]
    usages = [ExtendedKeyUsageOID.CLIENT_AUTH]
    if role == "aggregator":
        usages.append(ExtendedKeyUsageOID.SERVER_AUTH)
    builder = (
        x509.CertificateBuilder()
        .subject_name(
            x509.Name(
                [
                    x509.NameAttribute(NameOID.COMMON_NAME, name),
                    x509.NameAttribute(NameOID.ORGANIZATION_NAME, name),
                    x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, role),
                ]
            )
        )
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
    )
    certificate = builder.sign(ca_key, hashes.SHA256())
    target = out or directory
    files = IssuedFiles(
        target / f"{name}.crt", target / f"{name}.key", directory / CA_CERT
    )
    target.mkdir(parents=True, exist_ok=True)
    files.certificate.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    _write_private(
        files.key,
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )
    return files


def identity_of(pem: bytes) -> Identity:
    """Organization, role and fingerprint of a PEM certificate."""
    certificate = x509.load_pem_x509_certificate(pem)
    subject = certificate.subject
    organizations = subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    roles = subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)
    organization = str(organizations[0].value) if organizations else ""
    role = str(roles[0].value) if roles else ""
    fingerprint = certificate.fingerprint(hashes.SHA256()).hex()
    return Identity(organization=organization, role=role, fingerprint=fingerprint)


def trust_problem(pem: bytes, ca_bundle: bytes, *, now: dt.datetime) -> str | None:
    """Why the CA bundle as it is now would not accept ``pem``; None when it would.

    TLS checks a certificate once, at the handshake; a connection then lives for hours.
    Checking again on every call makes a rotated CA or an expired certificate take
    effect on the peer's next call instead of its next connection.
    """
    certificate = x509.load_pem_x509_certificate(pem)
    if now < certificate.not_valid_before_utc:
        return f"certificate is not valid before {certificate.not_valid_before_utc}"
    if now > certificate.not_valid_after_utc:
        return f"certificate expired at {certificate.not_valid_after_utc}"
    for authority in x509.load_pem_x509_certificates(ca_bundle):
        try:
            certificate.verify_directly_issued_by(authority)
        except (ValueError, TypeError, InvalidSignature):
            continue
        return None
    subject = certificate.subject.rfc4514_string()
    return f"certificate of {subject} is not issued by the current federation CA"
