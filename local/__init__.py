"""Running the pipeline on one machine: LocalDagRunner, SQLite metadata, Beam DirectRunner."""
import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
