"""The model server's flags (serving/server.py): TF Serving's flags are accepted."""
import pytest

from serving.server import build_service, parse_flags


def test_tf_serving_flags_are_accepted():
    args = parse_flags(["--port=8500", "--rest_api_port=8501", "--model_name=m",
                        "--model_base_path=/models/m", "--enable_batching",
                        "--file_system_poll_wait_seconds=5"])
    assert (args.port, args.rest_api_port, args.enable_batching, args.host) == (
        8500, 8501, True, "127.0.0.1")
    assert parse_flags(["--model_base_path=/m", "--enable_batching=false"]).enable_batching \
        is False
    with pytest.raises(SystemExit):
        parse_flags(["--port=8500"])  # no model


def test_a_batching_file_needs_enable_batching(capsys, tmp_path):
    """TF Serving refuses to start so; the file was silently ignored here."""
    with pytest.raises(SystemExit):
        parse_flags(["--model_base_path=/m", f"--batching_parameters_file={tmp_path}/b.txt"])
    assert "--batching_parameters_file is set without --enable_batching" in \
        capsys.readouterr().err


@pytest.mark.parametrize("flags,message", [
    (["--port=70000"], "--port must be a port number, 0 to 65535, not 70000"),
    (["--rest_api_port=-1"], "--rest_api_port must be a port number"),
    # it served gRPC in clear text with a warning
    (["--use_alts_credentials=true"], "--use_alts_credentials: this server has no ALTS"),
    # -1 removed gRPC's limit while REST refused every body; 0s failed after the load
    (["--max_request_bytes=-1"], "--max_request_bytes must be at least 1"),
    (["--max_request_bytes=0"], "--max_request_bytes must be at least 1"),
    (["--grpc_max_threads=0"], "--grpc_max_threads must be at least 1"),
    (["--rest_api_num_threads=0"], "--rest_api_num_threads must be at least 1"),
])
def test_flags_that_cannot_be_honoured_are_refused(capsys, flags, message):
    with pytest.raises(SystemExit):
        parse_flags(["--model_base_path=/m", *flags])
    assert message in capsys.readouterr().err


def test_channel_arguments_are_int32_or_strings_as_tf_serving():
    """3000000000 ended the start in an OverflowError traceback."""
    from serving.server import channel_arguments
    assert channel_arguments("grpc.max_connection_idle_ms=3000000000,a=-5,b=x1") == [
        ("grpc.max_connection_idle_ms", "3000000000"), ("a", -5), ("b", "x1")]


def test_the_test_helper_reads_model_flags_in_both_forms(tmp_path):
    from serving.process import _model_names
    assert _model_names(["--model_name=m", "--model_base_path=/m"]) == ["m"]
    assert _model_names(["--model_name", "n"]) == ["n"]
    assert _model_names(["--model_base_path=/m"]) == ["default"]


def test_folded_weights_need_bfloat16(capsys):
    args = parse_flags(["--model_base_path=/m", "--mixed_precision=bfloat16",
                        "--bfloat16_fold_weights"])
    assert (args.mixed_precision, args.bfloat16_fold_weights) == ("bfloat16", True)
    assert parse_flags(["--model_base_path=/m"]).bfloat16_fold_weights is False
    with pytest.raises(SystemExit):
        parse_flags(["--model_base_path=/m", "--bfloat16_fold_weights=true"])
    assert "add --mixed_precision=bfloat16" in capsys.readouterr().err


@pytest.mark.parametrize("kind", ["load", "unload"])
def test_load_and_unload_threads_reach_the_store_and_are_checked(capsys, tmp_path, kind):
    flag = f"--num_{kind}_threads"
    args = parse_flags([f"--model_base_path={tmp_path}", f"{flag}=2"])
    assert getattr(build_service(args).store.options, f"{kind}_threads") == 2
    with pytest.raises(SystemExit):
        parse_flags(["--model_base_path=/m", f"{flag}=-1"])
    assert f"{flag} must be 0 ({kind} in the poller) or more" in capsys.readouterr().err


@pytest.mark.parametrize("host,address", [
    ("127.0.0.1", "127.0.0.1:8500"), ("localhost", "localhost:8500"),
    ("::1", "[::1]:8500"), ("[::1]", "[::1]:8500"),  # '::1:8500' bound nothing
    ("", "[::]:8500"), ("::", "[::]:8500"), ("0.0.0.0", "0.0.0.0:8500")])
def test_grpc_listens_on_ipv6_and_every_interface_as_rest_does(host, address):
    """docs/security.md names '::' and an empty --host; both failed to start, blamed on a
    port in use."""
    from serving.server import grpc_listen_address, rest_listen_host
    assert grpc_listen_address(host, 8500) == address
    assert rest_listen_host(host) == {"[::1]": "::1", "::": ""}.get(host, host)
