"""The house rules of the layout, checked on the source: who may import whom.

Layers, lowest first: ``serving`` (the server, clients and the contract of names),
``models`` (what runs inside Transform and the Trainer), ``components`` (the custom TFX
components and readers of stock components' outputs), ``pipeline`` (its definition and
configuration), the runners ``local`` and ``kubeflow`` (side by side, neither imports
the other) and ``cli`` on top. A package imports its own modules and the layers below.
"""
import ast
import os

import pytest

from tests.support.paths import REPO

PROJECT_PACKAGES = {"bench", "cli", "components", "kubeflow", "local", "models", "pipeline",
                    "serving", "tests", "tools"}
BELOW = {
    "serving": set(),  # the server and clients run without the pipeline's code
    "models": {"serving"},  # only serving.contract's names and serving.precision's check
    "components": {"models", "serving"},
    "pipeline": {"components", "models", "serving"},
    "local": {"pipeline", "components", "models", "serving"},
    "kubeflow": {"pipeline", "components", "models", "serving"},
    "cli": {"local", "kubeflow", "pipeline", "components", "models", "serving"},
}
OUTSIDE_THE_LAYERS = {"bench", "tests", "tools"}  # scripts and tests: they may use any layer


def module_trees(package: str):
    """(path relative to the repository, parsed module) for every module of ``package``."""
    for folder, _, files in os.walk(os.path.join(REPO, package)):
        for name in sorted(files):
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                with open(path, encoding="utf-8") as f:
                    yield os.path.relpath(path, REPO), ast.parse(f.read(), path)


def imported_modules(tree: ast.AST) -> set:
    """Every absolute import of a module, at its top or inside a function."""
    modules = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            modules.add(node.module)
    return modules


def imported_packages(package: str) -> dict:
    """{module file: project packages it imports} for every module of ``package``."""
    return {path: {m.split(".")[0] for m in imported_modules(tree)} & PROJECT_PACKAGES
            for path, tree in module_trees(package)}


def test_every_package_has_a_layer():
    packages = {name for name in os.listdir(REPO)
                if os.path.isfile(os.path.join(REPO, name, "__init__.py"))
                or name in PROJECT_PACKAGES}
    assert packages - OUTSIDE_THE_LAYERS == set(BELOW)


@pytest.mark.parametrize("package", sorted(BELOW))
def test_packages_import_only_the_layers_below(package):
    allowed = BELOW[package] | {package}
    offenders = {path: sorted(packages - allowed)
                 for path, packages in imported_packages(package).items()
                 if packages - allowed}
    assert offenders == {}


def test_models_use_only_the_serving_contract_and_the_cpu_check():
    """The names the exported model and its callers share, and whether this CPU computes
    in bfloat16 (the server's --mixed_precision and the Trainer's precision auto ask the
    same question): no server code."""
    for path, tree in module_trees("models"):
        used = {m for m in imported_modules(tree) if m.split(".")[0] == "serving"}
        assert used <= {"serving", "serving.contract", "serving.precision"}, (path, used)
        if "serving" in used:  # ``from serving import contract``, nothing else
            names = {alias.name for node in ast.walk(tree)
                     if isinstance(node, ast.ImportFrom) and node.module == "serving"
                     for alias in node.names}
            assert names <= {"contract", "precision"}, (path, names)


def contract_renames(tree: ast.AST) -> list:
    """Imports that give ``serving.contract`` or one of its names another name."""
    renamed = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module in ("serving", "serving.contract"):
            renamed += [alias.name for alias in node.names if alias.asname and (
                node.module == "serving.contract" or alias.name == "contract")]
        elif isinstance(node, ast.Import):
            renamed += [alias.name for alias in node.names
                        if alias.asname and alias.name == "serving.contract"]
    return renamed


@pytest.mark.parametrize("package", sorted(BELOW))
def test_contract_names_are_imported_under_their_own_names(package):
    """``serving.contract`` is the one home of the names: nobody renames one on import."""
    renamed = {path: found for path, tree in module_trees(package)
               if (found := contract_renames(tree))}
    assert renamed == {}


def test_a_renamed_contract_import_is_found():
    tree = ast.parse("from serving.contract import TEXT_FEATURE as TEXT\n"
                     "from serving import contract as names\nimport serving.contract as c\n"
                     "from serving.contract import LABEL_FEATURE\nfrom serving import auth as a")
    assert contract_renames(tree) == ["TEXT_FEATURE", "contract", "serving.contract"]
