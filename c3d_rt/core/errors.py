"""User-facing errors: each message says what was expected, what arrived and what to do.

The CLI prints them without a traceback and exits with status 1.
"""

from __future__ import annotations


class C3DError(Exception):
    """Base of every error c3d-rt reports to a user as a plain message."""


def describe(exc: BaseException, limit: int = 300) -> str:
    """``Type: first line of the message``, shortened at a word boundary (never mid-word) to about ``limit``."""
    lines = str(exc).strip().splitlines()
    text = lines[0].strip() if lines else ""
    if len(text) > limit:
        cut = text.rfind(" ", 0, limit)
        text = text[: cut if cut > limit // 2 else limit].rstrip(" ,;:") + " ..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
