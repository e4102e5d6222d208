"""Every relative link in README.md, docs/*.md and bench/README.md resolves: to a file or
folder inside the repository, and a ``#anchor`` to a heading of the Markdown file it names
(GitHub's heading slugs). Plain text parsing, no TensorFlow: a second or less."""
import os
import re
import urllib.parse

from tests.support.doc_files import INLINE_CODE, doc_files, lines_outside_fences
from tests.support.files import write
from tests.support.paths import REPO

INLINE_LINK = re.compile(r"\[[^\]]*\]\(\s*<?([^)\s>]*)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE_DEFINITION = re.compile(r"^ {0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)")
HEADING = re.compile(r"^ {0,3}(#{1,6})\s+(.*?)(?:\s+#+)?\s*$")
HTML_ANCHOR = re.compile(r"<a\s+(?:name|id)=\"([^\"]+)\"")
URL_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")


def prose_lines(text: str):
    """Lines outside fenced code blocks with inline code removed: where links count."""
    for number, line in lines_outside_fences(text):
        yield number, INLINE_CODE.sub("", line)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: link text kept, lower case, punctuation dropped,
    each space a hyphen."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)
    text = re.sub(r"<[^>]+>", "", text).strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(path: str) -> set:
    """Every anchor a Markdown file has: its headings' slugs (a repeated one gets -1,
    -2, ...) and explicit ``<a name=...>``/``<a id=...>``."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    seen, found = {}, set(HTML_ANCHOR.findall(text))
    for _, line in lines_outside_fences(text):  # a heading's code spans keep their text
        heading = HEADING.match(line)
        if heading:
            base = slug(heading.group(2))
            count = seen.get(base, 0)
            seen[base] = count + 1
            found.add(base if count == 0 else f"{base}-{count}")
    return found


def link_targets(text: str):
    """(line number, target) of every inline link, image and reference definition."""
    for number, line in prose_lines(text):
        for target in INLINE_LINK.findall(line):
            yield number, target
        definition = REFERENCE_DEFINITION.match(line)
        if definition:
            yield number, definition.group(1)


def link_problem(root: str, doc: str, target: str):
    """Why ``target``, linked from ``doc``, does not resolve; None when it does."""
    if URL_SCHEME.match(target) or target.startswith("//"):
        return None  # not a relative link
    path, _, anchor = urllib.parse.unquote(target).partition("#")
    source = os.path.join(root, doc)
    resolved = os.path.normpath(os.path.join(os.path.dirname(source), path)) if path else source
    if os.path.relpath(resolved, root).startswith(os.pardir):
        return "outside the repository"
    if not os.path.exists(resolved):
        return "no such file or folder"
    if anchor and resolved.endswith(".md") and anchor not in anchors(resolved):
        return f"no heading with the anchor #{anchor}"
    return None


def broken_links(root: str = REPO) -> list:
    """'file:line: target (why)' for every relative link that does not resolve."""
    broken = []
    for doc in doc_files(root):
        with open(os.path.join(root, doc), encoding="utf-8") as f:
            text = f.read()
        for number, target in link_targets(text):
            problem = link_problem(root, doc, target)
            if problem:
                broken.append(f"{doc}:{number}: {target} ({problem})")
    return broken


def test_every_relative_link_in_readme_and_docs_resolves():
    assert "README.md" in doc_files() and len(doc_files()) > 2
    assert broken_links() == []


def test_a_missing_file_a_missing_heading_and_a_path_outside_are_reported(tmp_path):
    write(tmp_path, "README.md", "# Top\n\nSee [a](docs/a.md#the-api), [gone](docs/gone.md),\n"
                                 "[bad anchor](docs/a.md#nope), [out](../elsewhere.md).\n")
    write(tmp_path, "docs/a.md", "# A\n\n## The `API`\n\n[back](../README.md#top)\n")
    assert broken_links(str(tmp_path)) == [
        "README.md:3: docs/gone.md (no such file or folder)",
        "README.md:4: docs/a.md#nope (no heading with the anchor #nope)",
        "README.md:4: ../elsewhere.md (outside the repository)"]


def test_github_slugs_repeated_headings_and_code_blocks(tmp_path):
    write(tmp_path, "README.md", "\n".join([
        "# Progress and `--verbose`", "## Setup", "## Setup", "## Clients: `predict`, (TLS)",
        "```bash", "# not a heading", "[not a link](missing.md)", "```",
        "`[in code](missing.md)` [ok](#progress-and---verbose) [ok](#setup-1)",
        "[ok](#clients-predict-tls) [ok](http://example.com/x) [bad](#not-a-heading)"]))
    assert anchors(str(tmp_path / "README.md")) == {
        "progress-and---verbose", "setup", "setup-1", "clients-predict-tls"}
    assert broken_links(str(tmp_path)) == [
        "README.md:10: #not-a-heading (no heading with the anchor #not-a-heading)"]
