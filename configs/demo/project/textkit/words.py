"""Counting words."""


def word_count(text: str) -> int:
    """Number of whitespace-separated words in `text`."""
    return len(text.split())
