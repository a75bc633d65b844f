"""Test-time PKI: a CA, a server and client cert from it, and a client cert from a stranger CA."""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

# Generated fresh in a tmp dir each run, so no key material is ever committed.
_DAY = datetime.timedelta(days=1)


@dataclass(frozen=True)
class Pki:
    """Paths of the generated PEM files."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    stranger_cert: Path  # a client cert signed by a CA the server does not trust
    stranger_key: Path


@dataclass(frozen=True)
class _Issued:
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey


def make_pki(directory: Path) -> Pki:
    """Write a complete PKI for loopback TLS tests into ``directory``."""
    ca, other_ca = _ca("test CA"), _ca("stranger CA")
    server = _leaf(ca, "localhost", ExtendedKeyUsageOID.SERVER_AUTH)
    client = _leaf(ca, "scraper", ExtendedKeyUsageOID.CLIENT_AUTH)
    stranger = _leaf(other_ca, "stranger", ExtendedKeyUsageOID.CLIENT_AUTH)
    (directory / "ca.pem").write_bytes(_cert_pem(ca))
    return Pki(
        ca=directory / "ca.pem",
        server_cert=_write(directory, "server.pem", _cert_pem(server)),
        server_key=_write(directory, "server.key", _key_pem(server)),
        client_cert=_write(directory, "client.pem", _cert_pem(client)),
        client_key=_write(directory, "client.key", _key_pem(client)),
        stranger_cert=_write(directory, "stranger.pem", _cert_pem(stranger)),
        stranger_key=_write(directory, "stranger.key", _key_pem(stranger)),
    )


def _ca(name: str) -> _Issued:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = _name(name)
    builder = _builder(subject, subject, key.public_key()).add_extension(
        x509.BasicConstraints(ca=True, path_length=0), critical=True
    ).add_extension(
        x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                      content_commitment=False, key_encipherment=False, data_encipherment=False,
                      key_agreement=False, encipher_only=False, decipher_only=False),
        critical=True,
    ).add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    return _Issued(builder.sign(key, hashes.SHA256()), key)


def _leaf(issuer: _Issued, name: str, usage: x509.ObjectIdentifier) -> _Issued:
    key = ec.generate_private_key(ec.SECP256R1())
    sans = [x509.DNSName(name), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    issuer_ski = issuer.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    builder = _builder(_name(name), issuer.cert.subject, key.public_key()).add_extension(
        x509.SubjectAlternativeName(sans), critical=False
    ).add_extension(
        x509.BasicConstraints(ca=False, path_length=None), critical=True
    ).add_extension(
        x509.ExtendedKeyUsage([usage]), critical=False
    ).add_extension(
        x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(issuer_ski), critical=False
    )
    return _Issued(builder.sign(issuer.key, hashes.SHA256()), key)


def _builder(subject: x509.Name, issuer: x509.Name,
             public_key: ec.EllipticCurvePublicKey) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    return (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer)
            .public_key(public_key).serial_number(x509.random_serial_number())
            .not_valid_before(now - _DAY).not_valid_after(now + _DAY))


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _cert_pem(issued: _Issued) -> bytes:
    return issued.cert.public_bytes(serialization.Encoding.PEM)


def _key_pem(issued: _Issued) -> bytes:
    return issued.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())


def _write(directory: Path, name: str, data: bytes) -> Path:
    path = directory / name
    path.write_bytes(data)
    return path
