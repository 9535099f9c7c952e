"""Which optional extra brings which third-party module, and how to say so to a user.

Shared by the ``onehop`` command (a ``ModuleNotFoundError`` escaping a handler) and by
handlers that check an optional module before doing long work (``--plot``). It imports
nothing from onehop but the error types.
"""

from __future__ import annotations

import importlib.util

from .errors import ConfigError, ConfigProblem

#: Third-party packages that come with an extra, by top-level module name.
EXTRA_OF_MODULE = {
    "sqlalchemy": "network", "alembic": "network", "psycopg": "network", "boto3": "network",
    "botocore": "network", "shiv": "network",
    "PyInstaller": "network",
    "aiosmtpd": "mail", "aiosmtplib": "mail", "dkim": "mail",
    "nfstream": "lab", "pyroute2": "lab", "matplotlib": "lab",
}


def install_hint(module: str) -> str | None:
    """``comes with the 'lab' extra: pip install 'onehop[lab]'`` (None: no extra brings it)."""
    extra = EXTRA_OF_MODULE.get(module.partition(".")[0])
    if extra is None:
        return None
    return f"comes with the '{extra}' extra: pip install 'onehop[{extra}]'"


def missing_extra(exc: ModuleNotFoundError) -> str | None:
    """What to tell a user whose install lacks the extra a command needs (None: a bug)."""
    module = (exc.name or "").partition(".")[0]
    hint = install_hint(module)
    if hint is None:
        return None
    return f"this command needs {module}, which {hint}"


def require(module: str, option: str) -> None:
    """Refuse ``option`` up front, naming the extra, when ``module`` is not installed."""
    if importlib.util.find_spec(module) is None:
        hint = install_hint(module) or f"install {module}"
        raise ConfigError([ConfigProblem(option, f"needs {module}, which {hint}")])
