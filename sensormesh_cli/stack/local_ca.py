"""The local stack's own certificate authority, for `sensormesh up --tls`.

On the first TLS start a CA and a server certificate for `localhost`,
`127.0.0.1` and `::1` are made under `<data>/tls/` (folder 0700, keys 0600):

    ca.pem          the CA certificate: what clients trust (`curl --cacert`, the agents' `ca_file`)
    ca.key          its key: kept only to issue the next server certificate
    server.pem      the server certificate, then the CA (the chain Envoy and the services serve)
    server.key      its key

Later starts reuse them, so a CA a user told a browser or a tool to trust keeps
working. The server certificate is issued again (by the same CA) when it
expires within RENEW_BEFORE or does not name what it must; the CA is made again
only if its files are gone or unusable. Keys are ECDSA P-256: small, fast and
accepted by every TLS stack involved (Envoy's BoringSSL, gRPC, curl, Python).
"""

from __future__ import annotations

import datetime
import ipaddress
import logging
import os
import socket
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

log = logging.getLogger(__name__)

SERVER_NAMES = ("localhost",)
SERVER_ADDRESSES = (ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1"))
CA_VALIDITY = datetime.timedelta(days=3650)
SERVER_VALIDITY = datetime.timedelta(days=397)  # the most browsers accept for a leaf
RENEW_BEFORE = datetime.timedelta(days=30)


@dataclass(frozen=True)
class LocalTls:
    """Where the local stack's TLS files are."""

    folder: Path

    @property
    def ca_cert(self) -> Path:
        return self.folder / "ca.pem"

    @property
    def ca_key(self) -> Path:
        return self.folder / "ca.key"

    @property
    def server_cert(self) -> Path:
        """The server certificate followed by the CA's: the chain a server presents."""
        return self.folder / "server.pem"

    @property
    def server_key(self) -> Path:
        return self.folder / "server.key"


def ensure_local_tls(data_dir: Path, *, now: datetime.datetime | None = None) -> LocalTls:
    """The CA and server certificate under `<data_dir>/tls`, made or renewed as needed."""
    now = now or datetime.datetime.now(datetime.UTC)
    tls = LocalTls(data_dir / "tls")
    tls.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(tls.folder, 0o700)
    ca = _load_ca(tls, now)
    if ca is None:
        ca = _new_ca(now)
        _write_key(tls.ca_key, ca[1])
        tls.ca_cert.write_bytes(ca[0].public_bytes(serialization.Encoding.PEM))
        log.info("event=local_ca_created path=%s", tls.ca_cert)
    if not _server_usable(tls, ca[0], now):
        cert, key = _new_server(ca, now)
        _write_key(tls.server_key, key)
        chain = cert.public_bytes(serialization.Encoding.PEM) + ca[0].public_bytes(serialization.Encoding.PEM)
        tls.server_cert.write_bytes(chain)
        log.info(
            "event=local_server_certificate_issued path=%s not_after=%s",
            tls.server_cert,
            cert.not_valid_after_utc,
        )
    return tls


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    """The key in PKCS#8 PEM, created 0600 (never readable by others, not even for a moment)."""
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    path.unlink(missing_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as f:
        f.write(pem)


def _load_ca(
    tls: LocalTls, now: datetime.datetime
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None:
    try:
        cert = x509.load_pem_x509_certificate(tls.ca_cert.read_bytes())
        key = serialization.load_pem_private_key(tls.ca_key.read_bytes(), password=None)
    except (OSError, ValueError):
        return None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.public_key() != cert.public_key():
        return None
    if cert.not_valid_after_utc - RENEW_BEFORE < now:
        return None
    return cert, key


def _server_usable(tls: LocalTls, ca: x509.Certificate, now: datetime.datetime) -> bool:
    """The kept server certificate is issued by `ca`, matches its key, names what it must and is not expiring."""
    try:
        cert = x509.load_pem_x509_certificate(tls.server_cert.read_bytes())
        key = serialization.load_pem_private_key(tls.server_key.read_bytes(), password=None)
    except (OSError, ValueError):
        return False
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.public_key() != cert.public_key():
        return False
    try:
        cert.verify_directly_issued_by(ca)
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (ValueError, TypeError, InvalidSignature, x509.ExtensionNotFound):
        return False
    wanted = {*SERVER_NAMES, *SERVER_ADDRESSES}
    present = {*names.get_values_for_type(x509.DNSName), *names.get_values_for_type(x509.IPAddress)}
    return wanted <= present and cert.not_valid_after_utc - RENEW_BEFORE > now


def _key_usage(**allowed: bool) -> x509.KeyUsage:
    """A KeyUsage with only the `allowed` uses set."""
    uses = [
        "digital_signature", "content_commitment", "key_encipherment", "data_encipherment",
        "key_agreement", "key_cert_sign", "crl_sign", "encipher_only", "decipher_only",
    ]  # fmt: skip
    return x509.KeyUsage(**{use: allowed.get(use, False) for use in uses})


def _new_ca(now: datetime.datetime) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "sensormesh local stack"),
            x509.NameAttribute(NameOID.COMMON_NAME, f"sensormesh local CA ({socket.gethostname()})"),
        ]
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + CA_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(key_cert_sign=True, crl_sign=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def _new_server(
    ca: tuple[x509.Certificate, ec.EllipticCurvePrivateKey], now: datetime.datetime
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    ca_cert, ca_key = ca
    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = [x509.DNSName(n) for n in SERVER_NAMES]
    names += [x509.IPAddress(a) for a in SERVER_ADDRESSES]
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, SERVER_NAMES[0])]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(min(now + SERVER_VALIDITY, ca_cert.not_valid_after_utc))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(digital_signature=True), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    return cert, key
