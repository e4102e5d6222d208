"""The tests are laid out like the code (docs/testing.md): a product module's unit tests are
tests/unit/<package>/.../test_<module>.py, or its docstring says which tier tests it; tier
tests sit in their tier's folder, which sets their marker (a second tier is the only tier
decorator); shared helpers are in tests/support/. Plain file reading."""
import ast
import os
import re

import pytest

from tests.support.files import write
from tests.support.paths import REPO
from tests.support.tiers import TIERS

PACKAGES = ("serving", "models", "components", "pipeline", "local", "kubeflow", "cli")
# tests/unit/test_<name>.py that check the repository as a whole, not one module
REPOSITORY_CHECKS = {"architecture", "docs_examples", "docs_links", "layout", "pod_security",
                     "requirements"}
TESTED = re.compile(r"^Tested\b")
TEST_PATH = re.compile(r"\btests/[\w/]+\.py\b")


def python_files(root: str, folder: str) -> list:
    """Paths, relative to ``root``, of the .py files under ``folder``."""
    found = []
    for path, dirs, files in os.walk(os.path.join(root, folder)):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        found += [os.path.relpath(os.path.join(path, name), root)
                  for name in sorted(files) if name.endswith(".py")]
    return found


def unit_test_path(module: str) -> str:
    """Where the unit tests of ``module`` (a path such as serving/lengths.py) live; a
    package's __init__.py is tested as the package (local/report/__init__.py:
    tests/unit/local/test_report.py)."""
    folder, name = os.path.split(module)
    if name == "__init__.py":
        folder, name = os.path.split(folder)
    return os.path.join("tests", "unit", folder, f"test_{name.removesuffix('.py')}.py")


def has_code(tree: ast.Module) -> bool:
    """Whether a module defines a function or a class (a package __init__.py that only
    sets environment variables has nothing to test)."""
    return any(isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
               for node in tree.body)


def coverage_line(docstring: str) -> str:
    """The paragraph right after the docstring's first one, if it starts with "Tested"."""
    paragraphs = [p.strip() for p in re.split(r"\n\s*\n", docstring or "") if p.strip()]
    return " ".join(paragraphs[1].split()) if len(paragraphs) > 1 and \
        TESTED.match(paragraphs[1]) else ""


def module_problems(root: str) -> list:
    problems = []
    for package in PACKAGES:
        for module in python_files(root, package):
            with open(os.path.join(root, module), encoding="utf-8") as f:
                tree = ast.parse(f.read())
            if os.path.basename(module) == "__init__.py" and not has_code(tree):
                continue
            if os.path.exists(os.path.join(root, unit_test_path(module))):
                continue
            line = coverage_line(ast.get_docstring(tree))
            named = TEST_PATH.findall(line)
            missing = [p for p in named if not os.path.exists(os.path.join(root, p))]
            if not named:
                problems.append(f"{module}: no {unit_test_path(module)}, and no \"Tested "
                                f"...: tests/<tier>/test_....py\" after its docstring's first "
                                f"paragraph")
            elif missing:
                problems.append(f"{module}: its docstring names {', '.join(missing)}, "
                                f"which does not exist")
    return problems


def file_problem(root: str, path: str):
    """Why the file ``path`` (under tests/) is outside the layout, or None."""
    parts = path.split(os.sep)
    name = parts[-1]
    if name in ("__init__.py", "conftest.py"):
        return None
    if parts[1] == "support":
        return f"{path}: a test file in tests/support/" if name.startswith("test_") else None
    if not name.startswith("test_"):
        return f"{path}: not a test file; helpers go to tests/support/"
    if parts[1] in TIERS:
        return None if len(parts) == 3 else f"{path}: tier folders are flat"
    if parts[1] != "unit":
        return f"{path}: outside tests/unit/ and the tier folders {', '.join(TIERS)}"
    target = name.removeprefix("test_").removesuffix(".py")
    if len(parts) == 3:
        if target in REPOSITORY_CHECKS or target in PACKAGES:
            return None
        return f"{path}: not a package, nor a repository check (REPOSITORY_CHECKS)"
    folder = os.path.join(root, *parts[2:-1])
    if parts[2] in PACKAGES and (os.path.exists(os.path.join(folder, target + ".py"))
                                 or os.path.isdir(os.path.join(folder, target))):
        return None
    return f"{path}: no {os.path.join(*parts[2:-1], target)}.py (or folder) for it to test"


def marker_problem(root: str, path: str):
    """A tier marker the folder already sets (conftest.py), or a module-wide one."""
    with open(os.path.join(root, path), encoding="utf-8") as f:
        text = f.read()
    folder = path.split(os.sep)[1]
    tiers = "|".join(TIERS)
    if re.search(rf"^(pytestmark|{tiers})\s*=.*\bmark\.({tiers})\b", text, re.M):
        return f"{path}: a module-wide tier marker; the folder sets the tier"
    forbidden = tiers if folder == "unit" else folder if folder in TIERS else None
    found = forbidden and re.search(rf"^\s*@pytest\.mark\.({forbidden})\b", text, re.M)
    return f"{path}: @pytest.mark.{found.group(1)} in tests/{folder}/" if found else None


def layout_problems(root: str) -> list:
    problems = []
    for path in python_files(root, "tests"):
        for problem in (file_problem(root, path), marker_problem(root, path)):
            if problem:
                problems.append(problem)
        folder = os.path.dirname(path)
        if not os.path.exists(os.path.join(root, folder, "__init__.py")):
            problems.append(f"{folder}: no __init__.py (same-named test files would collide)")
    return sorted(set(problems))


def test_every_module_has_a_unit_test_file_or_names_the_tier_that_tests_it():
    assert module_problems(REPO) == []


def test_every_test_file_sits_in_the_layout():
    assert layout_problems(REPO) == []


@pytest.mark.parametrize("docstring, found", [
    ('"""Summary."""', False),
    ('"""Summary.\n\nTested end to end: tests/e2e/test_run.py.\n"""', True),
    ('"""Summary on\ntwo lines.\n\nTested with a model server:\ntests/serving/test_run.py.\n"""',
     True),
    ('"""Summary.\n\nMore.\n\nTested end to end: tests/e2e/test_run.py.\n"""', False),
], ids=["summary only", "tested after the summary", "tested after a two-line summary",
        "tested later"])
def test_a_module_without_tests_or_a_tested_line_is_reported(tmp_path, docstring, found):
    write(tmp_path, "tests/e2e/test_run.py")
    write(tmp_path, "tests/serving/test_run.py")
    write(tmp_path, "serving/__init__.py", '"""Only a docstring: nothing to test."""')
    write(tmp_path, "serving/tested.py", '"""Has its file."""\ndef f():\n    pass\n')
    write(tmp_path, "tests/unit/serving/test_tested.py")
    write(tmp_path, "serving/other.py", docstring + "\n")
    assert module_problems(str(tmp_path)) == ([] if found else [
        "serving/other.py: no tests/unit/serving/test_other.py, and no \"Tested ...: "
        "tests/<tier>/test_....py\" after its docstring's first paragraph"])
    write(tmp_path, "serving/other.py", '"""S.\n\nTested end to end: tests/e2e/test_gone.py.\n"""')
    assert module_problems(str(tmp_path)) == [
        "serving/other.py: its docstring names tests/e2e/test_gone.py, which does not exist"]


def test_a_test_file_outside_the_layout_is_reported(tmp_path):
    for path in ["serving/lengths.py", "serving/deploy/models.config", "local/report/page.py",
                 "tests/__init__.py", "tests/conftest.py", "tests/support/__init__.py",
                 "tests/support/paths.py", "tests/unit/__init__.py",
                 "tests/unit/test_architecture.py", "tests/unit/serving/__init__.py",
                 "tests/unit/serving/test_lengths.py", "tests/unit/serving/test_deploy.py",
                 "tests/unit/local/__init__.py", "tests/unit/local/test_report.py",
                 "tests/e2e/__init__.py", "tests/e2e/test_anything.py"]:
        write(tmp_path, path)
    assert layout_problems(str(tmp_path)) == []
    for path in ["tests/test_flat.py", "tests/unit/serving/test_gone.py",
                 "tests/unit/test_whatever.py", "tests/e2e/deeper/test_x.py",
                 "tests/support/test_helper.py", "tests/unit/serving/helper.py",
                 "tests/unit/local/report/test_page.py"]:
        write(tmp_path, path)
    write(tmp_path, "tests/unit/serving/test_lengths.py", "@pytest.mark.serving\ndef test_x():")
    write(tmp_path, "tests/e2e/test_anything.py", "pytestmark = pytest.mark.e2e\n")
    write(tmp_path, "tests/e2e/test_other.py", "@pytest.mark.serving\n@pytest.mark.e2e\n")
    assert layout_problems(str(tmp_path)) == [
        "tests/e2e/deeper/test_x.py: tier folders are flat",
        "tests/e2e/deeper: no __init__.py (same-named test files would collide)",
        "tests/e2e/test_anything.py: a module-wide tier marker; the folder sets the tier",
        "tests/e2e/test_other.py: @pytest.mark.e2e in tests/e2e/",
        "tests/support/test_helper.py: a test file in tests/support/",
        "tests/test_flat.py: outside tests/unit/ and the tier folders "
        "e2e, image, serving, browser, storage",
        "tests/unit/local/report: no __init__.py (same-named test files would collide)",
        "tests/unit/serving/helper.py: not a test file; helpers go to tests/support/",
        "tests/unit/serving/test_gone.py: no serving/gone.py (or folder) for it to test",
        "tests/unit/serving/test_lengths.py: @pytest.mark.serving in tests/unit/",
        "tests/unit/test_whatever.py: not a package, nor a repository check "
        "(REPOSITORY_CHECKS)"]
