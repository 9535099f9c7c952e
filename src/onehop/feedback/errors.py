"""Errors of the feedback channel (all under :class:`onehop.errors.OnehopError`)."""

from __future__ import annotations

from ..errors import OnehopError


class FeedbackError(OnehopError):
    """Feedback could not be prepared, queued or stored."""


class SourceError(FeedbackError):
    """The upload directory or S3 prefix could not be listed, read or cleaned."""
