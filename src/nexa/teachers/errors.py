"""Errors a teacher call can end in, sorted by what the caller should do next.

``TransientTeacherError`` is worth retrying (429, 5xx, timeouts, dropped connections);
``PromptRejectedError`` fails one prompt but not the run (400: context too long, bad parameters);
``FatalTeacherError`` stops the run (bad key, unknown model or endpoint) since every call would fail;
``CircuitOpenError`` is raised when too many calls in a row failed. Messages never hold the API key.
"""

from __future__ import annotations


class TeacherError(Exception):
    """Base class of every teacher failure."""


class TransientTeacherError(TeacherError):
    """A failure that may pass: retry with backoff, waiting at least ``retry_after`` seconds if given."""

    def __init__(self, message: str, status: int | None = None, retry_after: float | None = None):
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


class PromptRejectedError(TeacherError):
    """The teacher refused this prompt; retrying the same request cannot help."""


class FatalTeacherError(TeacherError):
    """Every request would fail the same way (auth, unknown model, wrong URL): stop the run now."""


class CircuitOpenError(TeacherError):
    """Too many consecutive failures: the teacher looks down, so the run stops instead of paying for retries."""
