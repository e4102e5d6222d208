"""``--mixed_precision=bfloat16`` (serving/precision.py): the mode's values and the CPU
features it needs. The server's refusal: tests/serving/test_precision.py; parity with
float32 on a fine-tuned model: tests/e2e/test_precision.py."""
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
