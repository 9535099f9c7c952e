"""The single error hierarchy of onehop.

Every error we raise derives from ``OnehopError``. Protocol errors say whose fault they
are: ``LocalProtocolError`` (we misused an API) or ``RemoteProtocolError`` (the peer sent
something invalid), each with a short machine-readable ``reason``. Library and OS
exceptions are translated into these at one boundary per adapter, never passed as strings.
"""

from __future__ import annotations

from dataclasses import dataclass


class OnehopError(Exception):
    """Root of every error onehop raises on purpose."""


class ProtocolError(OnehopError):
    """A protocol rule was broken. ``reason`` is a stable, short identifier."""

    def __init__(self, reason: str, detail: str = "") -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}" if detail else reason)


class LocalProtocolError(ProtocolError):
    """Our own code misused a protocol object (a bug on our side)."""


class RemoteProtocolError(ProtocolError):
    """The peer sent bytes that violate the protocol."""


@dataclass(frozen=True)
class ConfigProblem:
    """One problem found in a configuration: the offending key and what is wrong."""

    key: str
    message: str

    def __str__(self) -> str:
        return f"{self.key}: {self.message}"


class ConfigError(OnehopError):
    """A configuration failed validation; ``problems`` lists every problem at once."""

    def __init__(self, problems: list[ConfigProblem] | tuple[ConfigProblem, ...], source: str = "") -> None:
        self.problems = tuple(problems)
        self.source = source
        where = f" in {source}" if source else ""
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"{len(self.problems)} configuration problem(s){where}:\n{lines}")


class ServerEntryError(OnehopError):
    """A server entry could not be decoded or validated; ``field`` names the culprit."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.message = message
        super().__init__(f"invalid server entry field {field!r}: {message}")


class SignatureError(OnehopError):
    """A signature or key digest did not verify."""


class TunnelError(OnehopError):
    """Establishing or using a tunnel failed (dial, OSSH, SSH, API)."""

    def __init__(self, stage: str, message: str) -> None:
        self.stage = stage
        self.message = message
        super().__init__(f"{stage}: {message}")


class UpstreamProxyError(OnehopError):
    """The configured upstream proxy refused or failed a connection."""


class TransferError(OnehopError):
    """An HTTP download or upload failed; ``retryable`` says whether trying again may help."""

    def __init__(self, message: str, *, status: int | None = None, retryable: bool = True) -> None:
        self.status = status
        self.retryable = retryable
        super().__init__(message)
