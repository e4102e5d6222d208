"""The stock InfraValidator, compilable for Kubeflow Pipelines v2."""
