"""Paths the tests read: the repository, the shipped sample and schema, the shared data."""
import os

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SHARED_DATA = os.environ.get("SHARED_DATA", os.path.join(os.path.dirname(REPO), "shared", "data"))
SAMPLE = os.path.join(REPO, "data", "sample", "sst2_sample.tsv")
CURATED_SCHEMA = os.path.join(REPO, "schema", "schema.pbtxt")
BERT_PIPELINE = os.path.join(REPO, ".venv", "bin", "bert-pipeline")
