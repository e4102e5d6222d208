"""InfraValidator for Kubeflow Pipelines v2, with a hardened model server pod."""
