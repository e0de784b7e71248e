"""TLS for every service that offers it (smtp STARTTLS, pop3 STLS, imap STARTTLS, ftp AUTH TLS):
the configured certificate, or a self-signed one.

With no ``tls_cert``/``tls_key`` configured, the services use
``<data_dir>/tls/cert.pem`` and ``<data_dir>/tls/key.pem`` (one pair for all
of them), generating a self-signed certificate for
``localhost``/``127.0.0.1`` there on first start if none exists. The key is
written (0600, atomically) before the certificate, and a present certificate
is never replaced, so services sharing the data dir agree on one pair.
"""

from __future__ import annotations

import datetime
import ipaddress
from pathlib import Path

from OpenSSL import SSL, crypto
from twisted.internet import ssl

from twisted_netapps.errors import ConfigError
from twisted_netapps.fileio import ensure_private_dir, write_atomically

CERT_FILE = "cert.pem"
KEY_FILE = "key.pem"


def generate_self_signed(cert_path: Path, key_path: Path, hostname: str = "localhost") -> None:
    """Write a new EC P-256 key and a 10-year self-signed certificate for *hostname*."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=3650))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName(hostname), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    write_atomically(key_path, key_pem, mode=0o600)
    write_atomically(cert_path, cert.public_bytes(serialization.Encoding.PEM), mode=0o600)


def check_cert_key_pair(cert: str, key: str, where: str) -> None:
    """A configured certificate needs its key and the other way round."""
    if bool(cert) != bool(key):
        raise ConfigError(f"{where}: tls_cert and tls_key must be given together")


def server_tls_options(data_dir: Path, cert: str, key: str, where: str):
    """Twisted TLS context options from *cert*/*key* (paths), or the data dir's self-signed pair."""
    check_cert_key_pair(cert, key, where)
    if cert:
        cert_path, key_path = Path(cert), Path(key)
    else:
        tls_dir = ensure_private_dir(Path(data_dir) / "tls")
        cert_path, key_path = tls_dir / CERT_FILE, tls_dir / KEY_FILE
        if not cert_path.exists() or not key_path.exists():
            generate_self_signed(cert_path, key_path)
    try:
        pem = key_path.read_bytes() + b"\n" + cert_path.read_bytes()
        return ssl.PrivateCertificate.loadPEM(pem).options()
    except OSError as e:
        raise ConfigError(f"{where}: cannot read TLS certificate/key: {e}") from None
    except (ValueError, crypto.Error, SSL.Error) as e:
        raise ConfigError(f"{where}: invalid TLS certificate/key: {e}") from None
