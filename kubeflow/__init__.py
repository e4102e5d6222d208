"""Kubeflow Pipelines runner (KubeflowV2DagRunner) for the same ``create_pipeline``.

Not built yet: see the Kubeflow and scheduled-retraining issue.
"""
