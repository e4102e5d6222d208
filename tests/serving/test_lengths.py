"""`predict` sends its requests by length and prints in input order (a real server)."""
from tests.support.length_texts import TEXTS, _expected


def test_predict_sends_requests_by_length_and_prints_in_input_order(tmp_path, capsys):
    import json

    from cli.main import main
    from serving.process import ServerProcess
    from tests.support.serving_models import export_length_classifier
    export_length_classifier(str(tmp_path / "m" / "1"))
    lines = tmp_path / "texts.txt"
    lines.write_text("\n".join(TEXTS) + "\n")
    with ServerProcess(["--model_name", "m", "--model_base_path", str(tmp_path / "m")]) \
            as server:
        for address in (server.rest_url, f"grpc://{server.grpc_address}"):
            capsys.readouterr()
            assert main(["predict", "--server", address, "--model", "m", "--input",
                         str(lines), "--batch_size", "3"]) == 0
            printed = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
            assert [p["text"] for p in printed] == TEXTS
            assert [p["label"] for p in printed] == [_expected(t) for t in TEXTS]
    assert main(["predict", "--batch_size", "0", "x"]) == 1
    assert "--batch_size must be at least 1, got 0" in capsys.readouterr().err


def test_predict_says_to_lower_its_batch_size_when_the_server_batches_fewer(tmp_path,
                                                                           capsys):
    """TF Serving refuses a request of more rows than its max_batch_size; predict names
    its own setting to change, on both transports."""
    from cli.main import main
    from serving.process import ServerProcess
    from tests.support.serving_models import export_length_classifier
    export_length_classifier(str(tmp_path / "m" / "1"))
    batching = tmp_path / "batching.txt"
    batching.write_text("max_batch_size { value: 2 }\nbatch_timeout_micros { value: 0 }\n")
    with ServerProcess(["--model_name", "m", "--model_base_path", str(tmp_path / "m"),
                        "--enable_batching", "--batching_parameters_file", str(batching)]) \
            as server:
        for address in (server.rest_url, f"grpc://{server.grpc_address}"):
            capsys.readouterr()
            assert main(["predict", "--server", address, "--model", "m", "--batch_size",
                         "3", *TEXTS[:3]]) == 1
            err = capsys.readouterr().err
            assert "Task size 3 is larger than maximum input batch size 2" in err, err
            assert err.rstrip().endswith("lower --batch_size to the server's max_batch_size")
            assert main(["predict", "--server", address, "--model", "m", "--batch_size",
                         "2", *TEXTS[:3]]) == 0
