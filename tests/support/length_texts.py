"""Texts of several lengths and what the length model answers for them."""

TEXTS = ["a", "a much longer text, well over ten bytes", "bb", "another long one, indeed",
         "ccc", "x" * 300, "short", "medium text!"]


def _expected(text: str) -> str:
    return "long" if len(text.encode()) > 10 else "short"
