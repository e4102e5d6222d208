"""TLS settings (serving/tls.py): SSLConfig errors name the file and field, and clients
refuse to send a bearer token in clear text to a host that is not loopback or take
inconsistent TLS arguments. The real server over TLS: tests/serving/test_tls.py."""
import contextlib
import socket

import pytest
from google.protobuf import text_format

from serving import server as model_server
from serving.client import GrpcClient, RestClient, ServingClientError, Target, connect
from serving.tls import InsecureTokenError, SSLConfig, load_ssl_config
from tests.support.certificates import encrypted_key, read_pem, write_pem


def test_ssl_config_file_errors_name_the_file_and_field(certs, tmp_path, capsys):
    key, cert, ca = read_pem(certs.server_key), read_pem(certs.server_cert), read_pem(certs.ca)
    cases = {
        'server_key: "x" no_such_field: 1': "not an SSLConfig text proto",
        text_format.MessageToString(SSLConfig(server_key=key)): "server_cert is missing",
        'server_key: "/etc/tls/server.key" server_cert: "/etc/tls/server.pem"':
            "server_key must hold the PEM text itself",
        text_format.MessageToString(SSLConfig(server_key=key, server_cert=cert,
                                              client_verify=True)):
            "client_verify needs custom_ca",
        text_format.MessageToString(SSLConfig(server_key=read_pem(certs.client_key),
                                              server_cert=cert)):
            "server_key/server_cert: not a matching PEM key and certificate",
        text_format.MessageToString(SSLConfig(
            server_key=key, server_cert=cert,
            custom_ca="-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")):
            "custom_ca: not PEM certificates",
        text_format.MessageToString(SSLConfig(server_key=encrypted_key(), server_cert=cert)):
            "server_key is encrypted",  # an error, not OpenSSL's password prompt
    }
    for i, (text, message) in enumerate(cases.items()):
        path = tmp_path / f"ssl{i}.config"
        path.write_text(text)
        with pytest.raises(ValueError, match=message) as caught:
            load_ssl_config(str(path))
        assert str(path) in str(caught.value)
    with pytest.raises(ValueError, match="cannot read it"):
        load_ssl_config(str(tmp_path / "missing.config"))
    # A key line that lost its quote: protobuf's message quoted the line (key material).
    good = text_format.MessageToString(SSLConfig(server_key=key, server_cert=cert))
    key_line = next(line for line in key.splitlines() if not line.startswith("-----"))
    (tmp_path / "unquoted.config").write_text(
        "server_key:\n" + "".join(f'  "{line}\\n"\n' if line != key_line else f"  {line}\n"
                                  for line in key.splitlines()) + good.split("\n", 1)[1])
    with pytest.raises(ValueError, match=r"at line \d+, column \d+") as caught:
        load_ssl_config(str(tmp_path / "unquoted.config"))
    assert key_line[:20] not in str(caught.value)

    # The server stops with the same message before it loads any model.
    code = model_server.main(["--model_name", "half", "--model_base_path", str(tmp_path),
                              "--ssl_config_file", str(tmp_path / "ssl3.config")])
    assert code == 1
    assert f"SSL config {tmp_path / 'ssl3.config'}: client_verify needs custom_ca" in \
        capsys.readouterr().err

    # The README's form: each PEM as adjacent string literals, one line each.
    readme_form = "".join(f"{name}:\n" + "".join(f'  "{line}\\n"\n' for line in pem.splitlines())
                          for name, pem in (("server_key", key), ("server_cert", cert),
                                            ("custom_ca", ca)))
    (tmp_path / "readme.config").write_text(readme_form + "client_verify: true\n")
    parsed = load_ssl_config(str(tmp_path / "readme.config"))
    assert (parsed.key, parsed.cert, parsed.custom_ca, parsed.client_verify) == (
        key.encode(), cert.encode(), ca.encode(), True)


REMOTE = ["192.0.2.1:8500", "[2001:db8::1]:8500", "dns:///serving.example:8500"]


def test_token_is_never_sent_in_clear_text_to_a_remote_host(certs):
    """Refused before any connection: the documentation addresses are never dialled."""
    target = Target("half")
    for address in REMOTE:
        with pytest.raises(InsecureTokenError, match="refusing to send the bearer token"):
            GrpcClient(address, target, token="s3cret")
        with pytest.raises(InsecureTokenError, match="not loopback"):
            connect(f"grpc://{address}", target, token="s3cret")
    for url in ("http://192.0.2.1:8501", "http://[2001:db8::1]:8501",
                "http://serving.example:8501"):
        with pytest.raises(InsecureTokenError, match="in clear text to .* not loopback"):
            RestClient(url, target, token="s3cret")
        with pytest.raises(InsecureTokenError, match="in clear text to .* not loopback"):
            RestClient(url, target, feedback_token="s3cret")
    # Allowed: loopback in clear text, TLS anywhere, or an explicit opt-in.
    allowed = [GrpcClient(a, target, token="s3cret")
               for a in ("127.0.0.1:8500", "127.8.9.10:8500", "[::1]:8500", "localhost:8500")]
    allowed += [RestClient(u, target, token="s3cret")
                for u in ("http://127.0.0.1:8501", "http://[::1]:8501", "http://localhost:8501")]
    allowed += [GrpcClient(REMOTE[0], target, token="s3cret", ca_file=certs.ca),
                connect(f"grpcs://{REMOTE[0]}", target, token="s3cret"),
                RestClient("https://192.0.2.1:8501", target, token="s3cret"),
                GrpcClient(REMOTE[0], target, token="s3cret", allow_insecure_token=True),
                RestClient("http://192.0.2.1:8501", target, token="s3cret",
                           allow_insecure_token=True)]
    for client in allowed:
        client.close()


def test_client_tls_arguments_are_checked(certs, tmp_path):
    target = Target("half")
    with pytest.raises(ValueError, match="use https://"):
        RestClient("http://127.0.0.1:8501", target, ca_file=certs.ca)
    with pytest.raises(ValueError, match="client_cert and client_key go together"):
        GrpcClient("127.0.0.1:8500", target, client_cert=certs.client_cert)
    with pytest.raises(ValueError, match=f"ca_file {tmp_path / 'nope.pem'}"):
        RestClient("https://127.0.0.1:8501", target, ca_file=str(tmp_path / "nope.pem"))
    with pytest.raises(ValueError, match="client_key .*not a PEM file"):
        GrpcClient("127.0.0.1:8500", target, client_cert=certs.client_cert,
                   client_key=write_pem(tmp_path / "empty.key"))


def test_every_address_of_a_grpc_target_list_must_be_loopback_for_a_plain_token():
    """gRPC dials every address of ``ipv4:a,b`` / ``ipv6:[a]:p,[b]:p``: only the first was
    checked, and the token went in clear text to the second."""
    target = Target("half")
    for address in ("ipv6:[::1]:8500,[2001:db8::2]:8500", "ipv4:127.0.0.1:8500,192.0.2.1:8500",
                    "ipv4:192.0.2.1:8500", "dns://8.8.8.8/serving.example:8500",
                    "dns:serving.example:8500"):
        with pytest.raises(InsecureTokenError, match="not loopback"):
            GrpcClient(address, target, token="s3cret")
    for address in ("ipv4:127.0.0.1:8500", "ipv4:127.0.0.1:8500,127.0.0.2:8501",
                    "ipv6:[::1]:8500", "dns:///localhost:8500", "dns:localhost:8500",
                    "unix:/tmp/s.sock"):
        GrpcClient(address, target, token="s3cret").close()  # loopback only: allowed


@contextlib.contextmanager
def _listening():
    """A listening socket nothing accepts on (a proxy): whether anyone connected to it."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        sock.setblocking(False)

        def connected() -> bool:
            try:
                sock.accept()[0].close()
                return True
            except BlockingIOError:
                return False
        yield sock.getsockname()[1], connected


def test_a_plain_token_never_goes_through_a_proxy_from_the_environment(monkeypatch):
    """http_proxy / grpc_proxy in the environment: requests and gRPC sent the loopback
    request, bearer token and all, in clear text to the proxy."""
    with _listening() as (proxy_port, proxied), _listening() as (server_port, served):
        for name in ("http_proxy", "HTTP_PROXY", "grpc_proxy", "https_proxy"):
            monkeypatch.setenv(name, f"http://127.0.0.1:{proxy_port}")
        for name in ("no_proxy", "NO_PROXY", "no_grpc_proxy"):
            monkeypatch.delenv(name, raising=False)
        target = Target("half")
        with RestClient(f"http://127.0.0.1:{server_port}", target, token="s3cret",
                        timeout=0.5, retries=0) as rest:
            with pytest.raises(ServingClientError):
                rest.status()
        with GrpcClient(f"127.0.0.1:{server_port}", target, token="s3cret", timeout=0.5,
                        retries=0) as by_grpc:
            with pytest.raises(ServingClientError):
                by_grpc.status()
        assert not proxied() and served()
