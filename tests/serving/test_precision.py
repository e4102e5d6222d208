"""The server refuses ``--mixed_precision=bfloat16`` where it cannot honour it."""
import os


def test_server_refuses_bfloat16_it_cannot_honour(half_base):
    import subprocess
    import sys
    flags = ["--model_base_path", half_base, "--port", "0", "--rest_api_port", "0",
             "--grpc_socket_path", "/tmp/unused.sock"]
    wrong = subprocess.run([sys.executable, "-m", "serving.server", *flags,
                            "--mixed_precision=float16"], capture_output=True, text=True)
    assert wrong.returncode == 2 and "the only mode is bfloat16" in wrong.stderr
    # oneDNN switched off: TF Serving would skip the rewrite silently; refused here
    off = subprocess.run([sys.executable, "-m", "serving.server", *flags,
                          "--mixed_precision=bfloat16"], capture_output=True, text=True,
                         env={**os.environ, "TF_ENABLE_ONEDNN_OPTS": "0"}, timeout=300)
    assert off.returncode == 1, off.stderr[-2000:]
    assert "--mixed_precision=bfloat16: oneDNN is off" in off.stderr
    assert "leave the flag unset to serve in float32" in off.stderr
