"""Files a test writes under its tmp_path."""


def write(root, name: str, text: str = "") -> None:
    """Writes ``text`` to ``root / name``, making the folders on the way."""
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
