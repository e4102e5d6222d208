"""The test tiers (pytest.ini's markers): each has its folder, tests/<tier>/."""
import pathlib

TESTS = pathlib.Path(__file__).resolve().parent.parent
TIERS = ("e2e", "image", "serving", "browser", "storage")


def tier_of(path) -> str:
    """The tier folder a test file is in (tests/<tier>/...), or "" (tests/unit)."""
    path = pathlib.Path(path).resolve()
    if TESTS not in path.parents:
        return ""
    folder = path.relative_to(TESTS).parts[0]
    return folder if folder in TIERS else ""
