"""The ``bert-pipeline`` command line."""
import os
import sys
import warnings

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
# Set before TensorFlow loads (it reads the level once): quiet unless --verbose, which
# shows everything; quiet hides its C++ lines (errors too: failures still raise).
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "0" if "--verbose" in sys.argv[1:] else "3")
if "--verbose" not in sys.argv[1:]:  # google-api-core's notice, printed on import
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"google\.api_core")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
