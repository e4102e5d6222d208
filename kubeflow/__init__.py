"""Kubeflow Pipelines: the same ``create_pipeline`` compiled with KubeflowV2DagRunner
(runner), Beam args for distributed Beam workers (beam_args), submit/schedule (client)
and the pipeline image (Dockerfile)."""
# ``kubeflow`` is also the package of Kubeflow's own SDKs (kubeflow-training's
# kubeflow.training, kubeflow-katib's kubeflow.katib), which extend their ``__path__`` the
# same way: whichever ``kubeflow`` is imported first, the others' modules stay importable.
__path__ = __import__("pkgutil").extend_path(__path__, __name__)
