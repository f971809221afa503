"""The trainer's one error: a run that cannot start or go on, with what to do instead."""

from __future__ import annotations

from ..core.errors import C3DError


class TrainingError(C3DError, RuntimeError):
    """A training run that cannot go on; the message says why and what to do."""
