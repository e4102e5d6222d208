"""Files a test writes under its tmp_path, and what files hold."""
import glob
import gzip
import os


def write(root, name: str, text: str = "") -> None:
    """Writes ``text`` to ``root / name``, making the folders on the way."""
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def files_holding(root: str, needles: list) -> list:
    """(file, value) for every needle in any file under ``root`` (gzip-compressed files,
    e.g. TFRecords, read decompressed too)."""
    found = []
    for path in glob.glob(os.path.join(root, "**", "*"), recursive=True):
        if not os.path.isfile(path):
            continue
        with open(path, "rb") as f:
            data = f.read()
        if data[:2] == b"\x1f\x8b":
            data += gzip.decompress(data)
        found += [(path, n) for n in needles if n.encode("utf-8") in data]
    return found
