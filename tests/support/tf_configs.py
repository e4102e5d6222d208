"""TF_CONFIG values of a chief and a worker."""

CHIEF_AND_WORKER = {"cluster": {"chief": ["a:1"], "worker": ["b:2"]},
                    "task": {"type": "chief", "index": 0}}
