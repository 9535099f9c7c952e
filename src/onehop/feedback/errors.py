"""Errors of the operator's feedback tools (under the client half's
:class:`~onehop.client.feedback.errors.FeedbackError`, which the SQL store raises too)."""

from __future__ import annotations

from ..client.feedback.errors import FeedbackError


class SourceError(FeedbackError):
    """The upload directory or S3 prefix could not be listed, read or cleaned."""
