"""The pipeline definition shared by every runner, and its configuration."""
import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
