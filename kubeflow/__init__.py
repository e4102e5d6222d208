"""Kubeflow Pipelines: the same ``create_pipeline`` compiled with KubeflowV2DagRunner
(runner), Beam args for distributed Beam workers (beam_args), submit/schedule (client)
and the pipeline image (Dockerfile)."""
