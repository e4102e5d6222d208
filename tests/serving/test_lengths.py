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
