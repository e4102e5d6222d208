"""A test PKI made with ``cryptography``: a CA, a server certificate for 127.0.0.1/::1/
localhost, client certificates, a second CA nobody trusts; and TF Serving SSLConfig files
from them. Used by the TLS tests and the serving benchmark."""
import datetime
import ipaddress
import os
import types

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from google.protobuf import text_format

from serving.tls import SSLConfig


def certificate(common_name, key, issuer=None, issuer_key=None, usage=None, hosts=()):
    """A certificate for ``key``, self-signed (a CA) without ``issuer``."""
    now = datetime.datetime.now(datetime.timezone.utc)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    builder = (x509.CertificateBuilder()
               .subject_name(subject)
               .issuer_name(issuer.subject if issuer else subject)
               .public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5))
               .not_valid_after(now + datetime.timedelta(days=1))
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                              critical=False))
    if issuer is None:
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=None),
                                        critical=True).add_extension(
            x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                          content_commitment=False, key_encipherment=False,
                          data_encipherment=False, key_agreement=False, encipher_only=False,
                          decipher_only=False), critical=True)
    else:
        builder = builder.add_extension(
            x509.BasicConstraints(ca=False, path_length=None), critical=True).add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
            critical=False).add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    if hosts:
        builder = builder.add_extension(x509.SubjectAlternativeName(
            [x509.DNSName("localhost"), *(x509.IPAddress(ipaddress.ip_address(h))
                                          for h in hosts)]), critical=False)
    return builder.sign(issuer_key or key, hashes.SHA256())


def write_pem(path, key=None, cert=None) -> str:
    with open(path, "wb") as f:
        if key is not None:
            f.write(key.private_bytes(serialization.Encoding.PEM,
                                      serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()))
        if cert is not None:
            f.write(cert.public_bytes(serialization.Encoding.PEM))
    return str(path)


def encrypted_key() -> str:
    return ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"password")).decode("ascii")


def make_pki(folder: str) -> types.SimpleNamespace:
    """Paths of a CA, a server key/cert signed by it, a client key/cert signed by it,
    and a second CA with its own client certificate (trusted by nobody here)."""
    folder = str(folder)
    files = {}
    for ca_name in ("ca", "other_ca"):
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca = certificate(f"test {ca_name}", ca_key)
        files[ca_name] = write_pem(os.path.join(folder, f"{ca_name}.pem"), cert=ca)
        client_key = ec.generate_private_key(ec.SECP256R1())
        client = certificate("test client", client_key, ca, ca_key,
                              ExtendedKeyUsageOID.CLIENT_AUTH)
        prefix = "" if ca_name == "ca" else "other_"
        files[f"{prefix}client_cert"] = write_pem(os.path.join(folder, f"{prefix}client.pem"), cert=client)
        files[f"{prefix}client_key"] = write_pem(os.path.join(folder, f"{prefix}client.key"), key=client_key)
        if ca_name == "ca":
            server_key = ec.generate_private_key(ec.SECP256R1())
            server = certificate("localhost", server_key, ca, ca_key,
                                  ExtendedKeyUsageOID.SERVER_AUTH, hosts=["127.0.0.1", "::1"])
            files["server_cert"] = write_pem(os.path.join(folder, "server.pem"), cert=server)
            files["server_key"] = write_pem(os.path.join(folder, "server.key"), key=server_key)
    return types.SimpleNamespace(**files)


def read_pem(path) -> str:
    with open(path, encoding="ascii") as f:
        return f.read()


def ssl_config(path, certs, client_verify=False) -> str:
    """An SSLConfig text proto as TF Serving reads it: the PEM contents, not paths."""
    config = SSLConfig(server_key=read_pem(certs.server_key), server_cert=read_pem(certs.server_cert),
                       custom_ca=read_pem(certs.ca) if client_verify else "",
                       client_verify=client_verify)
    with open(path, "w", encoding="ascii") as f:
        f.write(text_format.MessageToString(config))
    return str(path)
