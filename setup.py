"""bert-text-pipeline: labelled text -> fine-tuned BERT classifier served by TF Serving."""
from setuptools import find_packages, setup

setup(
    name="bert-text-pipeline",
    version="0.1.0",
    description="TFX pipeline that fine-tunes a BERT text classifier and pushes it to "
                "TensorFlow Serving",
    python_requires=">=3.10,<3.11",
    packages=find_packages(include=["pipeline", "components", "components.*", "models",
                                    "local", "local.*", "kubeflow", "cli", "serving"]),
    package_data={"serving": ["deploy/*.config", "deploy/*.txt", "deploy/kubernetes/*.yaml"],
                  "local.report": ["templates/*.j2"]},
    # Exact versions live in requirements.txt (installed by `make`); these are the ranges
    # the code is written for.
    install_requires=[
        "tfx==1.16.0",
        "tensorflow>=2.16,<2.17",
        "tf-keras>=2.16,<2.17",
        "tensorflow-text>=2.16,<2.17",
        "transformers>=4.44,<5",
        "safetensors",
        "dill",
        "pyyaml",
        # serving/ (local server and clients)
        "tensorflow-serving-api>=2.16,<2.17",
        "grpcio",
        "tornado>=6",
        "prometheus-client",
        "requests",
        # kubeflow/ (compile, submit, schedule) and the local scheduler
        "kfp>=2.5,<2.6",
        "croniter>=6,<7",
        # local/report (the run report)
        "matplotlib>=3.9,<3.10",
        "jinja2>=3",
        "markdown>=3",
    ],
    entry_points={"console_scripts": ["bert-pipeline=cli.main:entry"]},
)
