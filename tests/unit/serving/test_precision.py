"""``--mixed_precision=bfloat16`` (serving/precision.py): the mode's values and the CPU
features it needs; a signature with its weights folded for bfloat16. The server's
refusal: tests/serving/test_precision.py; parity with float32 on a fine-tuned model:
tests/e2e/test_precision.py."""
import pytest

from serving.precision import bfloat16_refusal, check_mode, cpu_flags


def test_only_bfloat16_or_unset_is_a_mode():
    check_mode("")
    check_mode("bfloat16")
    for mode in ("float16", "BF16", "mixed_bfloat16"):
        with pytest.raises(ValueError, match="the only mode is bfloat16"):
            check_mode(mode)


def test_bfloat16_needs_native_instructions_and_onednn(tmp_path):
    assert bfloat16_refusal(frozenset({"avx512f", "amx_bf16"}), True) is None
    assert bfloat16_refusal(frozenset({"avx512f", "avx512_bf16"}), True) is None
    assert "no bfloat16 instructions" in bfloat16_refusal(frozenset({"avx512f", "avx2"}), True)
    assert "oneDNN is off" in bfloat16_refusal(frozenset({"amx_bf16"}), False)
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu avx512f amx_bf16\n\nflags : later\n")
    assert cpu_flags(str(cpuinfo)) == {"fpu", "avx512f", "amx_bf16"}
    assert cpu_flags(str(tmp_path / "missing")) == frozenset()


def _model_with_weights_and_a_table(path):
    """A SavedModel like the served one in miniature: a string input looked up in a
    table, then float32 weights (variables)."""
    import tensorflow as tf

    module = tf.Module()
    module.table = tf.lookup.StaticHashTable(tf.lookup.KeyValueTensorInitializer(
        tf.constant(["good", "bad"]), tf.constant([1, 2], tf.int64)), default_value=0)
    module.embedding = tf.Variable(tf.random.stateless_normal([3, 4], seed=[1, 2]))
    module.kernel = tf.Variable(tf.random.stateless_normal([4, 2], seed=[3, 4]))

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="text")])
    def predict(text):
        ids = module.table.lookup(text)
        logits = tf.matmul(tf.gather(module.embedding, ids), module.kernel)
        return {"probabilities": tf.nn.softmax(logits), "id": ids}

    tf.saved_model.save(module, path, signatures={"predict_text": predict})
    return tf.saved_model.load(path)  # the signatures' variables live as long as it


def test_folded_signature_answers_as_the_signature_with_constant_weights(tmp_path):
    import numpy as np
    import tensorflow as tf

    from serving.precision import FoldedSignature

    loaded = _model_with_weights_and_a_table(str(tmp_path / "m"))
    signature = loaded.signatures["predict_text"]
    folded = FoldedSignature(signature)
    text = tf.constant(["good", "bad", "unseen"])
    want, got = signature(text=text), folded(text=text)
    assert sorted(got) == ["id", "probabilities"]
    np.testing.assert_array_equal(got["id"].numpy(), [1, 2, 0])
    np.testing.assert_allclose(got["probabilities"].numpy(), want["probabilities"].numpy(),
                               rtol=1e-6)
    assert folded.structured_input_signature == signature.structured_input_signature
    # The weights are constants now: only the table is still captured.
    assert [t.dtype for t in folded._captured] == [tf.resource]
    assert len(signature.captured_inputs) > 1  # the table and the two variables
    # Eager only: a graph's call would need the function's body, which it does not keep.
    with pytest.raises(RuntimeError, match="called eagerly only"):
        tf.function(lambda t: folded(text=t)["id"])(text)


def test_a_signature_that_cannot_be_folded_is_served_as_it_is(caplog):
    from serving.precision import fold_weights

    class NotASignature:  # no inputs to fold
        pass

    odd = NotASignature()
    assert fold_weights({"odd": odd}, "m 1") == {"odd": odd}
    assert "signature 'odd' cannot have its weights folded" in caplog.text


def test_a_model_whose_signatures_share_the_redaction_loop_has_them_all_served(
        tmp_path, caplog):
    """The redaction's tf.while_loop in a signature that reads no variables (redact_text)
    failed to fold after a signature with weights had ('a duplicate function with name:
    while_cond_function_0 where the previous and current definitions differ'): a
    warning on every bfloat16 load of the project's models. A signature without variables
    has nothing to fold and is served as it is, quietly."""
    import numpy as np
    import tensorflow as tf

    from models import redaction
    from serving.precision import FoldedSignature, fold_weights

    module = tf.Module()
    module.weight = tf.Variable(2.0)
    redactor = redaction.from_settings({"redact": "all", "custom_patterns": []})
    spec = [tf.TensorSpec([None], tf.string, name="text")]

    @tf.function(input_signature=spec, autograph=False)
    def predict_text(text):
        return {"score": tf.cast(tf.strings.length(redactor(text)[0]), tf.float32)
                * module.weight}

    @tf.function(input_signature=spec, autograph=False)
    def redact_text(text):
        return {"text": redactor(text)[0]}

    tf.saved_model.save(module, str(tmp_path / "m"), signatures={
        "predict_text": predict_text.get_concrete_function(),
        "redact_text": redact_text.get_concrete_function()})
    loaded = tf.saved_model.load(str(tmp_path / "m"))
    folded = fold_weights(dict(loaded.signatures), "m 1")
    assert "cannot have its weights folded" not in caplog.text
    assert isinstance(folded["predict_text"], FoldedSignature)
    text = tf.constant(["mail a@b.example", "call 555-123-4567 now"])
    assert [t.decode() for t in folded["redact_text"](text=text)["text"].numpy()] == [
        "mail [unused1]", "call [unused3] now"]
    np.testing.assert_allclose(folded["predict_text"](text=text)["score"].numpy(),
                               [28.0, 36.0])


def test_folded_signature_finds_inputs_whose_names_tensorflow_changed(tmp_path):
    """The input 'Z-score' is the signature's 'Z_score' and the placeholder 'z_score'; the
    inputs are matched through that name, in whatever order."""
    import numpy as np
    import tensorflow as tf

    from serving.precision import FoldedSignature

    module = tf.Module()
    module.weight = tf.Variable([2.0, 3.0])

    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="Z-score"),
                                  tf.TensorSpec([None], tf.float32, name="alpha")])
    def weigh(z, alpha):
        return {"out": z * module.weight[0] + alpha * module.weight[1]}

    tf.saved_model.save(module, str(tmp_path / "m"), signatures={"weigh": weigh})
    loaded = tf.saved_model.load(str(tmp_path / "m"))
    folded = FoldedSignature(loaded.signatures["weigh"])
    signature = loaded.signatures["weigh"]
    assert sorted(signature.structured_input_signature[1]) == ["Z_score", "alpha"]
    inputs = {"Z_score": tf.constant([1.0]), "alpha": tf.constant([10.0])}
    np.testing.assert_allclose(folded(**inputs)["out"].numpy(), [32.0])
    np.testing.assert_allclose(signature(**inputs)["out"].numpy(), [32.0])


def test_folded_signature_keeps_no_python_copy_of_its_weights(tmp_path):
    """The runtime's function is all a folded signature needs: the Python graphs that
    built it held two more copies of the folded weights (180 MB of the main job's model,
    per encoder signature), and the FunctionDef its first call parsed a third."""
    import gc

    import numpy as np
    import tensorflow as tf
    from tensorflow.core.framework import function_pb2

    from serving.precision import FoldedSignature

    shape = [517, 263]  # a shape nothing else here has
    module = tf.Module()
    module.kernel = tf.Variable(tf.random.stateless_normal(shape, seed=[5, 6]))

    @tf.function(input_signature=[tf.TensorSpec([None, shape[0]], tf.float32, name="x")])
    def project(x):
        return {"y": tf.matmul(x, module.kernel)}

    tf.saved_model.save(module, str(tmp_path / "m"), signatures={"project": project})
    loaded = tf.saved_model.load(str(tmp_path / "m"))
    folded = FoldedSignature(loaded.signatures["project"])
    x = tf.ones([2, shape[0]])
    want = loaded.signatures["project"](x=x)["y"].numpy()
    np.testing.assert_allclose(folded(x=x)["y"].numpy(), want, rtol=1e-5)
    gc.collect()

    def is_the_weights(node):
        return node.op == "Const" and [d.size for d in node.attr["value"].tensor.tensor_shape
                                       .dim] == shape

    def holds_the_weights(graph):
        try:
            return any(is_the_weights(op.node_def) for op in graph.get_operations())
        except Exception:  # noqa: BLE001 - another test's graph, half torn down
            return False

    assert [g for g in gc.get_objects() if isinstance(g, tf.Graph) and holds_the_weights(g)
            ] == []
    definitions, seen, stack = [], set(), [folded]  # what the folded signature reaches
    while stack:
        item = stack.pop()
        if id(item) in seen or isinstance(item, (type, type(gc), type(len))) \
                or type(item).__name__ == "Context":
            continue
        seen.add(id(item))
        if isinstance(item, function_pb2.FunctionDef):
            definitions.append(item)
        stack.extend(gc.get_referents(item))
    assert definitions  # the walk reaches the cached definition
    assert not any(is_the_weights(node) for d in definitions for node in d.node_def)
    np.testing.assert_allclose(folded(x=x)["y"].numpy(), want, rtol=1e-5)  # still answers


def test_an_unloaded_folded_version_goes_when_its_last_request_ends(tmp_path):
    """Closing a version drops its batchers (which referred back to it), so a request
    still holding it frees its folded functions when it ends, with no collection."""
    import gc

    from tensorflow.python.eager import context

    from serving.batching import BatchingParameters
    from serving.servable import LoadSettings, Servable

    _model_with_weights_and_a_table(str(tmp_path / "m"))
    servable = Servable("m", 1, str(tmp_path / "m"), LoadSettings(
        fold_weights=True, batching=BatchingParameters(max_batch_size=4)))
    names = [fn._function.__self__.name for fn in servable._functions.values()]
    in_flight = servable  # a request still running on it
    servable.close()
    del servable
    gc.collect()
    assert all(context.context().has_function(name) for name in names)
    gc.disable()
    try:
        del in_flight  # the request ends
        assert not any(context.context().has_function(name) for name in names)
    finally:
        gc.enable()
