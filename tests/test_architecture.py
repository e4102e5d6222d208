"""The house rules of the layout, checked on the source: who may import whom."""
import ast
import os

import pytest

from tests.conftest import REPO

PROJECT_PACKAGES = {"bench", "cli", "components", "kubeflow", "local", "models", "pipeline",
                    "serving", "tests"}


def imported_packages(package: str) -> dict:
    """{module file: project packages it imports} for every module of ``package``."""
    found = {}
    for folder, _, files in os.walk(os.path.join(REPO, package)):
        for name in files:
            if not name.endswith(".py"):
                continue
            path = os.path.join(folder, name)
            with open(path, encoding="utf-8") as f:
                tree = ast.parse(f.read(), path)
            modules = set()
            for node in ast.walk(tree):
                if isinstance(node, ast.Import):
                    modules.update(alias.name for alias in node.names)
                elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                    modules.add(node.module)
            found[os.path.relpath(path, REPO)] = {
                m.split(".")[0] for m in modules} & PROJECT_PACKAGES
    return found


@pytest.mark.parametrize("package,allowed", [
    ("serving", {"serving"}),  # the server and clients run without the pipeline's code
    # never pipeline/: only serving.contract's names and serving.precision's CPU check
    ("models", {"models", "serving"}),
])
def test_packages_import_only_what_they_may(package, allowed):
    offenders = {path: sorted(packages - allowed)
                 for path, packages in imported_packages(package).items()
                 if packages - allowed}
    assert offenders == {}


def test_models_use_only_the_serving_contract_and_the_cpu_check():
    """The names the exported model and its callers share, and whether this CPU computes
    in bfloat16 (the server's --mixed_precision and the Trainer's precision auto ask the
    same question): no server code."""
    for path, packages in imported_packages("models").items():
        if "serving" in packages:
            with open(os.path.join(REPO, path), encoding="utf-8") as f:
                tree = ast.parse(f.read())
            used = {n.module for n in ast.walk(tree)
                    if isinstance(n, ast.ImportFrom) and (n.module or "").startswith("serving")}
            assert used <= {"serving.contract", "serving.precision"}, (path, used)
