"""Errors of the feedback channel (all under :class:`onehop.errors.OnehopError`); the
operator's tools add theirs below it (``onehop.feedback.errors``)."""

from __future__ import annotations

from ...errors import OnehopError


class FeedbackError(OnehopError):
    """Feedback could not be prepared, queued or stored."""

