"""A local certificate authority and the broker's TLS certificate, under `SC_DATA_DIR/pki`.

`ca.pem` is public (devices and clients verify the broker with it); `ca.key` and `broker.key`
are 0600. The broker certificate names localhost, 127.0.0.1, ::1, this host's name and addresses and
the broker's bind address, and is remade when one of those is missing or it expires within 30 days.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import socket
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from core.secrets import private_dir, write_private

CA_DAYS = 3650
CERT_DAYS = 825
RENEW_BEFORE = dt.timedelta(days=30)


@dataclass(frozen=True)
class Pki:
    dir: Path

    @property
    def ca_cert(self) -> Path:
        return self.dir / "ca.pem"

    @property
    def ca_key(self) -> Path:
        return self.dir / "ca.key"

    @property
    def cert(self) -> Path:
        return self.dir / "broker.pem"

    @property
    def key(self) -> Path:
        return self.dir / "broker.key"


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _host_addresses() -> list[str]:
    """This machine's own addresses, which devices on the network connect to."""
    try:
        return list(socket.gethostbyname_ex(socket.gethostname())[2])
    except OSError:
        return []


def _names(extra: list[str]) -> list[x509.GeneralName]:
    hosts = ["localhost", "127.0.0.1", "::1", socket.gethostname(), *_host_addresses(), *extra]
    out: list[x509.GeneralName] = []
    for h in dict.fromkeys(h for h in hosts if h and h not in ("0.0.0.0", "::")):
        try:
            out.append(x509.IPAddress(ipaddress.ip_address(h)))
        except ValueError:
            out.append(x509.DNSName(h))
    return out


def _make_ca(pki: Pki) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "smartcommunity"),
                      x509.NameAttribute(NameOID.COMMON_NAME, "smartcommunity local CA")])
    now = _now()
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=CA_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                         crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
    write_private(pki.ca_key, _key_pem(key))
    pki.ca_cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pki.cert.unlink(missing_ok=True)  # signed by the old CA, if any


def _cert_ok(pki: Pki, cert_path: Path, key_path: Path, names: list[x509.GeneralName]) -> bool:
    if not (cert_path.exists() and key_path.exists()):
        return False
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    ca = x509.load_pem_x509_certificate(pki.ca_cert.read_bytes())
    if cert.issuer != ca.subject or cert.not_valid_after_utc - _now() < RENEW_BEFORE:
        return False
    try:
        cert.verify_directly_issued_by(ca)  # a CA made anew has the same name, not the same key
    except (ValueError, TypeError, InvalidSignature):
        return False
    have = set(cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value)
    return set(names) <= have


def ensure_pki(directory: Path, hosts: list[str] | None = None) -> Pki:
    """Make (once) the CA and (when needed) the broker certificate; return their paths."""
    pki = Pki(private_dir(directory))
    if not (pki.ca_cert.exists() and pki.ca_key.exists()):
        _make_ca(pki)
    ca = x509.load_pem_x509_certificate(pki.ca_cert.read_bytes())
    if ca.not_valid_after_utc - _now() < RENEW_BEFORE:
        _make_ca(pki)
    ensure_cert(pki, pki.cert, pki.key, hosts or [])
    return pki


def ensure_cert(pki: Pki, cert_path: Path, key_path: Path, hosts: list[str],
                name: str = "smartcommunity broker") -> None:
    """A server certificate signed by the project's CA (another broker's, e.g. an edge's) naming this
    host and `hosts`; remade when a name is missing, it expires within 30 days or the CA changed."""
    names = _names(hosts)
    if _cert_ok(pki, cert_path, key_path, names):
        return
    ca = x509.load_pem_x509_certificate(pki.ca_cert.read_bytes())
    ca_key = serialization.load_pem_private_key(pki.ca_key.read_bytes(), password=None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    key = ec.generate_private_key(ec.SECP256R1())
    now = _now()
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "smartcommunity"),
                                     x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(ca.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=CERT_DAYS))
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    write_private(key_path, _key_pem(key))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
