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
