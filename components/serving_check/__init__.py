"""ServingCheck: the candidate model must load and answer in a model server."""
