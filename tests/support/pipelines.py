"""A pipeline's components by id and as text."""


def _by_id(pipeline) -> dict:
    return {c.id: c for c in pipeline.components}


def _everything(pipeline) -> str:
    """Every value the pipeline carries, as text."""
    return " ".join([pipeline.pipeline_info.pipeline_root, *pipeline.beam_pipeline_args,
                     *(str(c.exec_properties) for c in pipeline.components)])
