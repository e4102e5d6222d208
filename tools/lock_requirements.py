"""Writes the sha256 of every file pip may install for each pin of a requirements file.

    python tools/lock_requirements.py FILE...      (`make lock`: rewrites the files)

Each ``name==version`` line (extras allowed) gets one ``--hash=sha256:`` per file of that
release that pip could pick for CPython 3.10 on Linux x86_64: the source archive and the
wheels tagged ``py3``/``cp310``/``abi3`` for ``any`` or a (many)linux x86_64 platform,
as PyPI lists them (its simple API, what pip reads), plus the same files on the indexes
and find-links folders of this machine's pip configuration (a local mirror may hold
rebuilt files). Comments and other lines are kept. A pin with no file is an error.

Why not ``pip-compile --generate-hashes``: it resolves dependencies, and these files are
exact pins installed with ``--no-deps`` (kfp 2.5 and TF 2.16 disagree on protobuf in
their metadata, see requirements.txt), which a resolver refuses.
"""
from __future__ import annotations

import hashlib
import html
import json
import os
import re
import subprocess
import sys
import urllib.parse
import urllib.request

PYPI = "https://pypi.org/simple"
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?==([^\s;\\]+)\s*(\\)?\s*$")
LINK = re.compile(r'<a [^>]*href="([^"]+)"[^>]*>([^<]+)</a>')
SDIST = (".tar.gz", ".zip")


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def compatible(filename: str, name: str, version: str) -> bool:
    """A file of ``name`` ``version`` that pip may install on CPython 3.10, Linux x86_64."""
    for suffix in SDIST:
        if filename.endswith(suffix):
            stem = filename[:-len(suffix)]
            return normalize(stem) == normalize(f"{name}-{version}")
    if not filename.endswith(".whl"):
        return False
    parts = filename[:-4].split("-")
    if len(parts) not in (5, 6) or normalize(parts[0]) != normalize(name) \
            or parts[1] != version:
        return False
    pythons, abis, platforms = (set(p.split(".")) for p in parts[-3:])
    python_ok = bool(pythons & {"py3", "py2.py3", "py310", "cp310"}) or (
        "abi3" in abis and any(re.fullmatch(r"cp3\d*", p) and int(p[3:] or 0) <= 10
                               for p in pythons))
    abi_ok = bool(abis & {"none", "abi3", "cp310"})
    platform_ok = any(p == "any" or (p.startswith(("manylinux", "linux"))
                                     and p.endswith("x86_64")) for p in platforms)
    return python_ok and abi_ok and platform_ok


def _read(url: str, accept: str = "text/html") -> str:
    if url.startswith("file:"):
        path = urllib.parse.unquote(urllib.parse.urlparse(url).path)
        path = os.path.join(path, "index.html") if os.path.isdir(path) else path
        if not os.path.exists(path):
            return ""
        with open(path, encoding="utf-8") as f:
            return f.read()
    request = urllib.request.Request(url, headers={"Accept": accept})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.read().decode("utf-8")
    except urllib.error.HTTPError as e:
        if e.code == 404:
            return ""
        raise


def pypi_files(name: str) -> dict:
    """filename -> sha256 of every file PyPI lists for ``name`` (PEP 691 JSON)."""
    page = _read(f"{PYPI}/{normalize(name)}/", "application/vnd.pypi.simple.v1+json")
    if not page:
        return {}
    return {f["filename"]: f["hashes"]["sha256"] for f in json.loads(page)["files"]
            if "sha256" in f.get("hashes", {})}


def index_files(index: str, name: str) -> dict:
    """filename -> sha256 from a PEP 503 index page (the #sha256= of its links)."""
    files = {}
    for href, text in LINK.findall(_read(f"{index.rstrip('/')}/{normalize(name)}/")):
        digest = re.search(r"#sha256=([0-9a-f]{64})", html.unescape(href))
        if digest:
            files[text.strip()] = digest.group(1)
    return files


def folder_files(folder: str, name: str, version: str) -> dict:
    """filename -> sha256 of the files of ``name`` ``version`` in a find-links folder."""
    files = {}
    if os.path.isdir(folder):
        for filename in os.listdir(folder):
            if compatible(filename, name, version):
                with open(os.path.join(folder, filename), "rb") as f:
                    files[filename] = hashlib.file_digest(f, "sha256").hexdigest() \
                        if hasattr(hashlib, "file_digest") else \
                        hashlib.sha256(f.read()).hexdigest()
    return files


def pip_sources() -> tuple[list, list]:
    """The index URLs and find-links folders of this machine's pip configuration."""
    config = subprocess.run([sys.executable, "-m", "pip", "config", "list"],
                            capture_output=True, text=True)
    if config.returncode != 0:  # without it a mirror's own files would go unhashed
        sys.exit(f"cannot read pip's configuration ({sys.executable} -m pip config list): "
                 f"{config.stderr.strip()}")
    listed = config.stdout
    indexes, folders = [], []
    for line in listed.splitlines():
        key, _, value = line.partition("=")
        values = value.strip().strip("'\"").split()
        if key.endswith(("index-url", "extra-index-url")):
            indexes += [v for v in values if normalize(v) != normalize(PYPI)]
        elif key.endswith("find-links"):
            folders += [urllib.parse.urlparse(v).path if v.startswith("file:") else v
                        for v in values]
    for variable, into in (("PIP_EXTRA_INDEX_URL", indexes), ("PIP_INDEX_URL", indexes),
                           ("PIP_FIND_LINKS", folders)):
        into += os.environ.get(variable, "").split()
    return sorted(set(indexes)), sorted(set(folders))


def hashes(name: str, version: str, indexes: list, folders: list) -> list:
    found = {}
    for files in [pypi_files(name)] + [index_files(i, name) for i in indexes]:
        found.update({(filename, digest): None for filename, digest in files.items()
                      if compatible(filename, name, version)})
    for folder in folders:
        found.update(dict.fromkeys(folder_files(folder, name, version).items()))
    return sorted({digest for _, digest in found})


def lock(path: str, indexes: list, folders: list) -> None:
    with open(path, encoding="utf-8") as f:
        lines = f.read().splitlines()
    out, missing = [], []
    for line in lines:
        if line.lstrip().startswith("--hash="):
            continue  # the old hashes of the pin above
        match = PIN.match(line)
        if not match:
            out.append(line)
            continue
        name, extras, version = match.group(1), match.group(2) or "", match.group(3)
        digests = hashes(name, version, indexes, folders)
        if not digests:
            missing.append(f"{name}=={version}")
        out.append(f"{name}{extras}=={version}" + "".join(
            f" \\\n    --hash=sha256:{d}" for d in digests))
        print(f"{path}: {name}=={version}: {len(digests)} file(s)", file=sys.stderr)
    if missing:
        sys.exit(f"{path}: no file found for {', '.join(missing)}")
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(out) + "\n")


def main(paths: list) -> None:
    if not paths:
        sys.exit(__doc__)
    indexes, folders = pip_sources()
    for path in paths:
        lock(path, indexes, folders)


if __name__ == "__main__":
    main(sys.argv[1:])
