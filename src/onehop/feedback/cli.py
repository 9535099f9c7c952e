"""``onehop feedback``: send (users), collect / decrypt / list (operators).

::

    onehop feedback send --message TEXT [--email ADDR] [--no-diagnostics]
                         [--config FILE | --data-dir DIR] [--attempts N] [--json]
    onehop feedback flush [--config FILE | --data-dir DIR] [--attempts N] [--json]
    onehop feedback collect --db URL --from DIR|s3://bucket/prefix [--key FILE]
                            [--s3-endpoint URL] [--server-ids FILE] [--max-size BYTES] [--json]
    onehop feedback receive --listen HOST:PORT --to DIR [--max-size BYTES] [--quiet]
    onehop feedback decrypt --key FILE BLOB|- [--raw]
    onehop feedback list --db URL [--limit N] [--json]

``send`` exits 0 once uploaded, 75 (EX_TEMPFAIL) when the package is saved but not
uploaded yet (the client, or ``flush``, uploads it later). ``collect`` exits 0 when
every upload was stored or skipped, 1 when some were rejected or failed (they are left
in place). Parsers only: the handlers are in ``commands_user`` (send, flush) and
``commands_operator`` (the rest), imported when their verb runs.

``collect`` and ``list`` use the network database (``onehop network init`` creates the
table): by default ``collect`` decrypts with the network's feedback keys (the active
one, then retired ones, so uploads made before a rotation still decrypt) and replaces
the address of every server the network ever had with its server ID; ``--key`` and
``--server-ids`` override them.
"""

from __future__ import annotations

import argparse
import importlib

from ..cliargs import add_after_verb
from ..errors import ConfigError, ConfigProblem

DB_HELP = ("network database URL, for collect and list (default: the network's default database); "
           "accepted before or after the verb")

#: Verbs that have no use for ``--db`` (given before or after the verb, it is refused).
NO_DB = ("send", "flush", "decrypt", "receive")


def _dispatch(name: str):
    """The handler ``module.function`` of this package, imported when the verb runs:
    ``onehop`` builds every part's parser at each start, and loading the client's feedback
    modules (``commands_user``) or aiohttp's server (``commands_operator``) here would
    slow every command down."""
    def run(args) -> int:
        if getattr(args, "db", None) and args.feedback_command in NO_DB:
            raise ConfigError([ConfigProblem("--db", f"only collect and list use the network database, "
                                                     f"not {args.feedback_command}")])
        module_name, _, function = name.rpartition(".")
        return getattr(importlib.import_module(f"onehop.feedback.{module_name}"), function)(args)
    return run


def _refused_db(parser) -> None:
    """Accept ``--db`` after a verb that has no use for it, so that it is refused in words
    (by ``_dispatch``) rather than by argparse's "unrecognized arguments"."""
    add_after_verb(parser, "--db", metavar="URL", help_text="not used by this verb (refused)")


def register(sub) -> None:
    p = sub.add_parser("feedback", help="send feedback; collect, decrypt and list it (operators)")
    p.add_argument("--db", metavar="URL", help=DB_HELP)
    fsub = p.add_subparsers(dest="feedback_command", required=True)
    s = fsub.add_parser("send", help="send feedback with redacted, encrypted diagnostics")
    s.add_argument("--message", required=True, help="what went wrong, in your words")
    s.add_argument("--email", default="", help="where the operators may answer (optional)")
    s.add_argument("--no-diagnostics", action="store_true", help="send the message only")
    _refused_db(s)
    _client_flags(s)
    s.set_defaults(func=_dispatch("commands_user.send"))
    f = fsub.add_parser("flush", help="upload feedback saved earlier and not uploaded yet")
    _refused_db(f)
    _client_flags(f)
    f.set_defaults(func=_dispatch("commands_user.flush"))
    c = fsub.add_parser("collect", help="decrypt and store uploaded feedback, then delete the uploads")
    add_after_verb(c, "--db", metavar="URL", help_text=DB_HELP)
    c.add_argument("--from", dest="source", required=True, help="upload directory or s3://bucket/prefix")
    c.add_argument("--key", help="the feedback private key (PEM or base64 DER file); default: the network "
                   "database's feedback keys")
    c.add_argument("--s3-endpoint", help="S3-compatible endpoint URL")
    c.add_argument("--server-ids", help='JSON file {"<server ip>": "<server id>", ...}, added to (and '
                   "overriding) the network database's servers")
    c.add_argument("--max-size", type=int, help="largest upload accepted, in bytes (default 8 MiB)")
    c.add_argument("--json", action="store_true", help="print the result as JSON")
    c.set_defaults(func=_dispatch("commands_operator.collect_uploads"))
    r = fsub.add_parser("receive", help="accept feedback uploads (HTTP PUT) into a directory for collect",
                        description="A small upload endpoint for a directory setup: each PUT body is stored "
                                    "atomically in --to DIR, which `onehop feedback collect --from DIR` reads. "
                                    "Clients upload to it once `onehop network settings set feedback-upload-url "
                                    "http://HOST:PORT/` is set and their build is made again. Never records who "
                                    "uploaded.")
    r.add_argument("--listen", required=True, metavar="HOST:PORT", help="where to accept uploads")
    r.add_argument("--to", required=True, metavar="DIR", help="the directory uploads are stored in")
    r.add_argument("--max-size", type=int, default=8 * 1024 * 1024, metavar="BYTES",
                   help="larger uploads get 413 (default 8 MiB, what collect accepts)")
    r.add_argument("--quiet", action="store_true", help="print no start line")
    _refused_db(r)
    r.set_defaults(func=_dispatch("commands_operator.receive"))
    d = fsub.add_parser("decrypt", help="decrypt one feedback blob (MAC checked first)")
    d.add_argument("--key", required=True, help="the feedback private key (PEM or base64 DER file)")
    d.add_argument("blob", help="blob file, or - for standard input")
    d.add_argument("--raw", action="store_true", help="print the plaintext without redacting it")
    _refused_db(d)
    d.set_defaults(func=_dispatch("commands_operator.decrypt_blob"))
    ls = fsub.add_parser("list", help="list stored feedback (decrypted, redacted)")
    add_after_verb(ls, "--db", metavar="URL", help_text=DB_HELP)
    ls.add_argument("--limit", type=int, default=50, help="how many, newest first (default 50)")
    ls.add_argument("--json", action="store_true", help="print JSON for scripts")
    ls.set_defaults(func=_dispatch("commands_operator.list_records"))


def _client_flags(p: argparse.ArgumentParser) -> None:
    where = p.add_mutually_exclusive_group()
    where.add_argument("--config", help="client config file (Psiphon key names)")
    where.add_argument("--data-dir", help="client data directory (with the built-in or default config)")
    p.add_argument("--attempts", type=int, default=3, help="upload attempts before giving up for now")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
