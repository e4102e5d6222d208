"""TLS: the real local server with TF Serving's --ssl_config_file (gRPC, and REST over
https), mutual TLS on both transports. Certificates are made here (a test CA, a server
certificate for 127.0.0.1/localhost, client certificates)."""
import numpy as np
import pytest

from serving.client import GrpcClient, RestClient, ServingClientError, Target, connect
from serving.process import ServerProcess
from tests.support.certificates import ssl_config


def _y(client) -> float:
    """y(2) = 3 through ``client``, over gRPC (output y) or REST (its single output)."""
    outputs = client.predict({"x": np.array([2.0], np.float32)})
    return float(outputs.get("y", outputs.get("output"))[0])


def test_tls_round_trip_on_grpc_and_rest(half_base, certs, tmp_path):
    """On every interface with a token: allowed with TLS (refused without it,
    tests/serving/test_auth.py)."""
    config = ssl_config(tmp_path / "ssl.config", certs)
    (tmp_path / "token").write_text("s3cret\n")
    flags = ["--model_name", "half", "--model_base_path", half_base, "--ssl_config_file", config,
             "--host", "0.0.0.0", "--auth_token_file", str(tmp_path / "token")]
    with ServerProcess(flags, ca_file=certs.ca, token="s3cret") as server:
        assert server.rest_url.startswith("https://")
        target, mine = Target("half"), {"ca_file": certs.ca, "token": "s3cret"}
        for client in (GrpcClient(server.grpc_address, target, **mine),
                       connect(f"grpcs://{server.grpc_address}", target, **mine),
                       RestClient(server.rest_url, target, **mine),
                       connect(server.rest_url, target, **mine)):
            with client:
                assert _y(client) == 3.0
                assert client.status()[0]["state"] == "AVAILABLE"

        # A client that speaks plain text, or trusts another CA, gets nothing.
        refused = [GrpcClient(server.grpc_address, target, retries=0),
                   RestClient(server.rest_url.replace("https:", "http:"), target, retries=0),
                   GrpcClient(server.grpc_address, target, retries=0, ca_file=certs.other_ca),
                   RestClient(server.rest_url, target, retries=0, ca_file=certs.other_ca)]
        for client in refused:
            with client, pytest.raises(ServingClientError) as caught:
                client.status()
            assert caught.value.code == "UNAVAILABLE", caught.value
        assert "CERTIFICATE_VERIFY_FAILED" in str(caught.value)  # the REST one, other CA


def test_mutual_tls_requires_a_client_certificate_from_custom_ca(half_base, certs, tmp_path):
    config = ssl_config(tmp_path / "ssl.config", certs, client_verify=True)
    flags = ["--model_name", "half", "--model_base_path", half_base, "--ssl_config_file", config]
    with ServerProcess(flags, ca_file=certs.ca, client_cert=certs.client_cert,
                       client_key=certs.client_key) as server:
        target = Target("half")
        mine = {"ca_file": certs.ca, "client_cert": certs.client_cert,
                "client_key": certs.client_key}
        for client in (GrpcClient(server.grpc_address, target, **mine),
                       RestClient(server.rest_url, target, **mine)):
            with client:
                assert _y(client) == 3.0

        other = {"ca_file": certs.ca, "client_cert": certs.other_client_cert,
                 "client_key": certs.other_client_key}
        for kwargs in ({"ca_file": certs.ca}, other):  # no certificate; one from another CA
            for client in (GrpcClient(server.grpc_address, target, retries=0, **kwargs),
                           RestClient(server.rest_url, target, retries=0, **kwargs)):
                with client, pytest.raises(ServingClientError) as caught:
                    client.status()
                assert caught.value.code == "UNAVAILABLE", caught.value
