"""The project's one redactor lives in ``onehop.core.redact``; feedback imports it from here."""

from ..core.redact import IP, MAC, SECRET, Redactor, is_secret_name, redact, redact_addresses  # noqa: F401
