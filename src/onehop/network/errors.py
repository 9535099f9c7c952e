"""Errors of the network tooling, all under :class:`onehop.errors.OnehopError`.

Bad operator input is a :class:`~onehop.errors.ConfigError` listing every problem;
the classes here cover the database and publishing.
"""

from __future__ import annotations

from ..errors import OnehopError


class NetworkError(OnehopError):
    """Something the network tooling cannot do; the message says what and why."""


class DatabaseError(NetworkError):
    """The database cannot be opened or read (missing, corrupt, unreachable)."""


class SchemaError(DatabaseError):
    """The schema is not at the revision this onehop needs."""


class NotFound(NetworkError):
    """A named record (sponsor, channel, host, server...) does not exist."""


class Conflict(NetworkError):
    """The change would break a rule (duplicate IP, port clash, duplicate name...)."""


class PublishError(NetworkError):
    """Publishing to a directory or S3 failed; nothing half-written is visible."""


class BuildError(NetworkError):
    """A client build could not be produced."""


class RemoteError(NetworkError):
    """A host could not be reached, authenticated or verified over SSH, or a command on
    it failed; the message names the host and what failed."""


class DeployError(NetworkError):
    """A deployment step failed; the message says which and what is left in place."""
