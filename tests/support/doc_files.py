"""The Markdown files the doc tests read, and their lines outside code fences."""
import glob
import os
import re

from tests.support.paths import REPO

DOC_PATTERNS = ("README.md", os.path.join("docs", "*.md"), os.path.join("bench", "README.md"))

FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
INLINE_CODE = re.compile(r"(`+).*?\1")


def doc_files(root: str = REPO) -> list:
    """The Markdown files whose links are checked, relative to ``root``."""
    found = []
    for pattern in DOC_PATTERNS:
        found += sorted(glob.glob(os.path.join(root, pattern)))
    return [os.path.relpath(path, root) for path in found]


def lines_outside_fences(text: str):
    """(line number, line) of every line outside fenced code blocks."""
    fence = None
    for number, line in enumerate(text.splitlines(), 1):
        opening = FENCE.match(line)
        if fence is None and opening:
            fence = opening.group(1)[0] * len(opening.group(1))
        elif fence is not None and line.strip().startswith(fence):
            fence = None
        elif fence is None:
            yield number, line
