"""Inferring a curated schema from data (``bert-pipeline schema``).

TFDV infers types and shapes from the rows TextExampleGen would produce; the
curation then requires text and label in every row, fixes the label domain
to the labels seen and sets the drift limits DriftCheck uses between spans (the
configuration's ``data.max_label_l_infinity`` and ``data.max_length_js_divergence``, as
drift comparators: a curated schema's comparators win over the configuration).
Review the file (add labels you expect later) and point ``data.schema_path`` at it.
"""
from __future__ import annotations

import os

from components.text_example_gen.parsing import ReaderConfig, read_file
from serving import contract


def pipeline_patterns(data) -> list:
    """The file patterns under ``data.input_dir`` that a run ingests (``data`` a
    ``DataConfig``): its input splits, in the newest ``data.window_spans`` span folders."""
    from components.text_example_gen.files import span_patterns
    from pipeline.pipeline import input_splits
    patterns = [split.pattern for split in input_splits(data)]
    if not data.span_pattern:
        return patterns
    in_spans = span_patterns(data.input_dir, data.span_pattern, patterns, data.window_spans)
    if not in_spans:
        raise ValueError(f"data.span_pattern: no folder named like {data.span_pattern} in "
                         f"{data.input_dir}")
    return in_spans


def infer_schema(input_dir: str, patterns: list, reader: ReaderConfig,
                 label_l_infinity: float, length_js_divergence: float,
                 presplit: bool = False, custom_patterns: list = ()):
    """The curated schema of the files ``patterns`` (globs in ``input_dir``) match, and
    how many rows it was inferred from (``custom_patterns``: replaced where an error
    quotes a row, as the built-in types are)."""
    import pandas as pd
    import tensorflow_data_validation as tfdv
    from tensorflow_metadata.proto.v0 import schema_pb2

    from components.text_example_gen.executor import input_files
    files = [path for pattern in patterns
             for path in input_files(input_dir, pattern, presplit)]
    records = [r for path in files for r in read_file(path, reader,
                                                      custom_patterns=custom_patterns)]
    columns = {contract.TEXT_FEATURE: [r.text for r in records],
               contract.LABEL_FEATURE: [list(r.labels) for r in records]}
    if reader.text_pair:
        columns[contract.TEXT_PAIR_FEATURE] = [r.text_pair for r in records]
    frame = pd.DataFrame(columns)
    if not reader.multi_label:
        frame[contract.LABEL_FEATURE] = [r.label for r in records]
    schema = tfdv.infer_schema(tfdv.generate_statistics_from_dataframe(frame))
    for feature in schema.feature:
        feature.presence.min_fraction = 1.0
        feature.presence.min_count = 1
        feature.ClearField("value_count")
        feature.shape.Clear()
        if feature.name != contract.LABEL_FEATURE:  # a text's values are no domain
            feature.ClearField("domain_info")
        if reader.multi_label and feature.name == contract.LABEL_FEATURE:
            feature.value_count.min = 1  # one or more labels per text
        else:
            feature.shape.dim.add(size=1)
    label = tfdv.get_feature(schema, contract.LABEL_FEATURE)
    label.ClearField("domain_info")
    label.domain = contract.LABEL_FEATURE
    label.drift_comparator.infinity_norm.threshold = label_l_infinity
    text = tfdv.get_feature(schema, contract.TEXT_FEATURE)
    text.drift_comparator.jensen_shannon_divergence.threshold = length_js_divergence
    del schema.string_domain[:]
    schema.string_domain.append(schema_pb2.StringDomain(
        name=contract.LABEL_FEATURE, value=sorted({label for r in records for label in r.labels})))
    return schema, len(records)


def write_schema(schema, path: str) -> None:
    import tensorflow_data_validation as tfdv
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tfdv.write_schema_text(schema, path)
