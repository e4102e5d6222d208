"""TLS for the local server and the clients.

Server: TF Serving's ``--ssl_config_file``, a text-format ``SSLConfig``
(tensorflow_serving/config/ssl_config.proto) holding the PEMs themselves, for gRPC
(as TF Serving) and for REST (this server's extension: TF Serving's REST is plain HTTP).
Clients: channel credentials from PEM files, and the rule that a bearer token never
travels in clear text to a host that is not loopback.
"""
from __future__ import annotations

import contextlib
import dataclasses
import ipaddress
import os
import ssl
import tempfile
import urllib.parse
from typing import List, Optional, Sequence

import grpc
from google.protobuf import descriptor_pb2, text_format

from serving.descriptors import message_class


def _ssl_config_class():
    """``tensorflow.serving.SSLConfig``, built here: the tensorflow-serving-api wheel
    does not ship ssl_config_pb2. Same package, names and field numbers."""
    field = descriptor_pb2.FieldDescriptorProto
    proto = descriptor_pb2.FileDescriptorProto(
        name="tensorflow_serving/config/ssl_config.proto", package="tensorflow.serving",
        syntax="proto3")
    message = proto.message_type.add(name="SSLConfig")
    for number, (name, kind) in enumerate([("server_key", field.TYPE_STRING),
                                           ("server_cert", field.TYPE_STRING),
                                           ("custom_ca", field.TYPE_STRING),
                                           ("client_verify", field.TYPE_BOOL)], start=1):
        message.field.add(name=name, number=number, type=kind, label=field.LABEL_OPTIONAL)
    return message_class(proto, "tensorflow.serving.SSLConfig")


SSLConfig = _ssl_config_class()


@dataclasses.dataclass(frozen=True)
class ServerTLS:
    """A checked SSLConfig: the server's key and certificate, the CA client certificates
    must chain to (``custom_ca``) and whether clients must present one."""

    key: bytes
    cert: bytes
    custom_ca: bytes
    client_verify: bool

    def grpc_credentials(self) -> grpc.ServerCredentials:
        """As TF Serving's server.cc: the client certificate is required and verified
        against ``custom_ca`` when ``client_verify``, not requested otherwise."""
        return grpc.ssl_server_credentials([(self.key, self.cert)],
                                           root_certificates=self.custom_ca or None,
                                           require_client_auth=self.client_verify)

    def ssl_context(self) -> ssl.SSLContext:
        """The same policy for the REST port (tornado's ``ssl_options``)."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        with _memory_file(self.cert) as cert, _memory_file(self.key) as key:
            try:
                context.load_cert_chain(cert, key, password=_no_password)
            except ssl.SSLError as error:
                raise ValueError(f"server_key/server_cert: not a matching PEM key and "
                                 f"certificate ({error})") from None
        if self.custom_ca:  # only this CA: the system's CAs never vouch for a client
            try:
                context.load_verify_locations(cadata=self.custom_ca.decode("utf-8"))
            except ssl.SSLError as error:
                raise ValueError(f"custom_ca: not PEM certificates ({error})") from None
        if self.client_verify:
            context.verify_mode = ssl.CERT_REQUIRED
        return context


@contextlib.contextmanager
def _memory_file(data: bytes):
    """A path to ``data`` in memory (a memfd: the private key never touches a disk, as
    Kubernetes keeps Secrets in memory); ssl reads files only. Where there is no memfd
    (not Linux): a private temporary file, removed at once."""
    if not hasattr(os, "memfd_create"):
        with tempfile.TemporaryDirectory() as folder:  # 0700
            path = os.path.join(folder, "pem")
            with open(path, "wb") as f:
                f.write(data)
            yield path
        return
    fd = os.memfd_create("pem", os.MFD_CLOEXEC)
    try:
        written = 0
        while written < len(data):
            written += os.write(fd, data[written:])
        yield f"/proc/self/fd/{fd}"
    finally:
        os.close(fd)


def _no_password():
    """Instead of OpenSSL's prompt on the terminal for an encrypted key."""
    raise ValueError("server_key is encrypted: SSLConfig holds an unencrypted PEM key")


def load_ssl_config(path: str) -> ServerTLS:
    """Reads and checks ``--ssl_config_file``; every error names the file (and field)."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as error:
        raise ValueError(f"SSL config {path}: cannot read it: {error}") from None
    config = SSLConfig()
    try:
        text_format.Parse(text, config)
    except text_format.ParseError as error:  # its message may quote a line of the key
        raise ValueError(f"SSL config {path}: not an SSLConfig text proto (server_key, "
                         f"server_cert, custom_ca, client_verify) at line {error.GetLine()}, "
                         f"column {error.GetColumn()}: a field name, quote or brace is "
                         f"wrong there (the parser's own message is not shown: it may "
                         f"quote key material)") from None
    for name in ("server_key", "server_cert", "custom_ca"):
        value = getattr(config, name)
        if name != "custom_ca" and not value:
            raise ValueError(f"SSL config {path}: {name} is missing")
        if value and "-----BEGIN " not in value:
            raise ValueError(f"SSL config {path}: {name} must hold the PEM text itself "
                             f"(-----BEGIN ...), not a file name")
    if config.client_verify and not config.custom_ca:
        raise ValueError(f"SSL config {path}: client_verify needs custom_ca, the CA that "
                         "signs the client certificates")
    tls = ServerTLS(config.server_key.encode("utf-8"), config.server_cert.encode("utf-8"),
                    config.custom_ca.encode("utf-8"), config.client_verify)
    try:
        tls.ssl_context()  # checks the PEMs now: gRPC would only fail at the first handshake
    except ValueError as error:
        raise ValueError(f"SSL config {path}: {error}") from None
    return tls


class InsecureTokenError(ValueError):
    """A bearer token would travel in clear text to a host that is not this machine."""


def is_loopback(host: str) -> bool:
    """``localhost``, 127.0.0.0/8 or ::1."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def grpc_hosts(address: str) -> List[str]:
    """Every host a gRPC target dials: ``host:port``, ``[::1]:port``,
    ``dns:[//resolver/]host:port``, or each of ``ipv4:a:port,b:port`` and
    ``ipv6:[a]:port,[b]:port`` (gRPC's naming); a Unix socket (``unix:...``) counts as
    ``localhost``."""
    if address.startswith(("unix:", "unix-abstract:")):
        return ["localhost"]
    scheme, sep, rest = address.partition(":")
    if sep and scheme in ("ipv4", "ipv6"):
        return [_host(part) for part in rest.split(",")]
    if sep and scheme == "dns":  # dns://8.8.8.8/host:port names the resolver first
        return [_host(rest[2:].partition("/")[2] if rest.startswith("//") else rest)]
    return [_host(address)]


def _host(host_port: str) -> str:
    try:
        return str(ipaddress.ip_address(host_port.strip("[]")))  # an IPv6 address, no port
    except ValueError:
        return urllib.parse.urlsplit(f"//{host_port}").hostname or host_port


def check_token_transport(token: Optional[str], hosts: Sequence[str], secure: bool,
                          allow_insecure_token: bool) -> None:
    """Refuses (before any connection) to send ``token`` without TLS where any of
    ``hosts`` (every host the client may dial) is remote."""
    remote = [host for host in hosts if not is_loopback(host)]
    if token and not secure and not allow_insecure_token and remote:
        raise InsecureTokenError(
            f"refusing to send the bearer token in clear text to {remote[0]}, which is not "
            "loopback: use TLS (https://, grpcs:// or tls=True, with ca_file for a private "
            "CA) or pass allow_insecure_token=True")


def read_pem(path: str, argument: str) -> bytes:
    """A PEM file given as ``argument``; errors name both."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as error:
        raise ValueError(f"{argument} {path}: {error.strerror}") from None
    if b"-----BEGIN " not in data:
        raise ValueError(f"{argument} {path}: not a PEM file (no -----BEGIN line)")
    return data


def check_client_files(ca_file: Optional[str], client_cert: Optional[str],
                       client_key: Optional[str]) -> None:
    """Both halves of a client certificate, and readable PEM files."""
    if bool(client_cert) != bool(client_key):
        raise ValueError("client_cert and client_key go together (mutual TLS)")
    for path, argument in ((ca_file, "ca_file"), (client_cert, "client_cert"),
                           (client_key, "client_key")):
        if path:
            read_pem(path, argument)


def grpc_channel_credentials(ca_file: Optional[str], client_cert: Optional[str],
                             client_key: Optional[str]) -> grpc.ChannelCredentials:
    """The server checked against ``ca_file`` (default: the system's CAs); with
    ``client_cert``/``client_key``, this client's certificate for mutual TLS."""
    check_client_files(ca_file, client_cert, client_key)
    return grpc.ssl_channel_credentials(
        root_certificates=read_pem(ca_file, "ca_file") if ca_file else None,
        private_key=read_pem(client_key, "client_key") if client_key else None,
        certificate_chain=read_pem(client_cert, "client_cert") if client_cert else None)
