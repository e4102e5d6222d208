"""Clients send the columns of a several-column model by name, to a real server."""
import json

import numpy as np
import pytest
import tensorflow as tf

from models import export
from tests.support.joined_columns import JoinedLength


def test_clients_send_the_columns_by_name(tmp_path, capsys):
    """Over a real server: REST :predict instances as objects, gRPC Predict, and Classify
    with the columns as tf.Example features all join in the graph; the client refuses a
    row lacking a column, a column the model does not take, and plain texts."""
    from cli.main import main
    from models.export import set_method_name
    from serving.client import GrpcClient, RestClient, ServingClientError, Target
    from serving.process import ServerProcess

    module = JoinedLength()
    version = str(tmp_path / "columns" / "1")
    tf.saved_model.save(module, version, signatures={
        "predict_text": module.predict_text.get_concrete_function(),
        "classify": module.classify.get_concrete_function()})
    set_method_name(version, "classify", "tensorflow/serving/classify")
    rows = [{"subject": "", "body": "short"}, {"subject": "Hi", "body": "a"},
            {"subject": "Grüße", "body": ""}, {"subject": "long subject", "body": "body"}]
    joined = [export.join_values([r["subject"], r["body"]], ". ") for r in rows]
    assert joined == ["short", "Hi. a", "Grüße", "long subject. body"]
    with ServerProcess(["--model_name", "columns", "--model_base_path",
                        str(tmp_path / "columns"), "--feedback_dir", str(tmp_path / "fb")]) \
            as server:
        target = Target("columns")
        with GrpcClient(server.grpc_address, target) as by_grpc, \
                RestClient(server.rest_url, target) as by_rest:
            for client in (by_grpc, by_rest):
                inputs = {n: np.array([r[n] for r in rows], dtype=object)
                          for n in ("subject", "body")}
                by_predict = client.predict(inputs, "predict_text")
                by_predict = by_predict.get("probabilities", by_predict.get("output"))
                predictions = client.predict_columns(rows)
                assert [p.columns for p in predictions] == rows
                # feedback records texts only: not recorded, and the server says so
                assert [p.id for p in predictions] == [None] * 4
                assert "feedback not recorded for model 'columns' version 1: its examples " \
                       "have no single 'text' feature" in server.log()
                assert [p.label for p in predictions] == [
                    "long" if len(t.encode()) > 10 else "short" for t in joined]
                np.testing.assert_allclose(
                    [[p.probabilities["short"], p.probabilities["long"]] for p in predictions],
                    by_predict, atol=1e-6)
                with pytest.raises(ServingClientError, match=r"row 1: model 'columns' takes "
                                                             r"body, subject; missing 'body'"):
                    client.predict_columns([rows[0], {"subject": "x"}])
                with pytest.raises(ServingClientError, match=r"row 0: .*unknown 'text'"):
                    client.predict_columns([dict(rows[0], text="x")])
                with pytest.raises(ServingClientError, match=r"takes the columns body, "
                                                             r"subject.*--columns"):
                    client.predict_texts(joined)
        assert server.log().count("feedback not recorded") == 1  # once per version
        capsys.readouterr()
        assert main(["predict", "--server", server.rest_url, "--model", "columns",
                     "--columns", json.dumps(rows[3])]) == 0
        [line] = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
        assert line["columns"] == rows[3] and line["label"] == "long" and "text" not in line
    assert main(["predict", "--columns", "subject: hi"]) == 1
    assert "--columns: text 1 is invalid JSON" in capsys.readouterr().err
    assert main(["predict", "--columns", "--pairs", "{}"]) == 1
    assert "--pairs or --columns, not both" in capsys.readouterr().err
