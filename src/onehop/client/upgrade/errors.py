"""Errors of the upgrade channel (all under :class:`onehop.errors.OnehopError`)."""

from __future__ import annotations

from ...errors import OnehopError


class UpgradeError(OnehopError):
    """An upgrade could not be verified, installed or rolled back."""


class DeltaError(UpgradeError):
    """A delta package was unusable (wrong base, bad patch, wrong result): use the full one."""
