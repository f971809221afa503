"""User-facing errors: each message says what was expected, what arrived and what to do.

The CLI prints them without a traceback and exits with status 1.
"""


class C3DError(Exception):
    """Base of every error c3d-rt reports to a user as a plain message."""
