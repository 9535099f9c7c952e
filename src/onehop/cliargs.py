"""The conventions every ``onehop`` subcommand's parser follows (docs/cli.md).

Shared by the parts' ``cli.py`` modules; it imports nothing from onehop.

* The thing a verb acts on is a positional argument (``network server retire ID``);
  an older ``--flag`` spelling of it stays accepted as a hidden alias
  (:func:`add_target`).
* An option that is accepted both before and after the verb (``--db``) is declared on
  the group with its default and again on each verb with ``default=SUPPRESS``
  (:func:`add_after_verb`), so the verb's copy overrides only when given.
* A group without its verb prints its help and exits 0, and a subcommand without its own
  description shows its help line as one (:func:`finish`).
"""

from __future__ import annotations

import argparse

#: Where :func:`add_target` records what :func:`check_targets` verifies after parsing.
TARGETS = "_onehop_targets"


def add_target(parser: argparse.ArgumentParser, dest: str, metavar: str, help_text: str,
               *old_flags: str) -> None:
    """A required positional ``dest``; ``old_flags`` (e.g. ``--name``) remain hidden aliases."""
    parser.add_argument(dest, nargs="?", default=argparse.SUPPRESS, metavar=metavar, help=help_text)
    if old_flags:
        parser.add_argument(*old_flags, dest=dest, default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    targets = list(parser.get_default(TARGETS) or [])
    parser.set_defaults(**{TARGETS: targets + [(parser, dest, metavar, old_flags)]})


def check_targets(args: argparse.Namespace) -> None:
    """Exit with the usage error argparse would give when a target is missing."""
    for parser, dest, metavar, _old_flags in getattr(args, TARGETS, ()):
        if getattr(args, dest, None) is None:
            parser.error(f"the following arguments are required: {metavar}")


def add_after_verb(parser: argparse.ArgumentParser, *flags: str, help_text: str, **kwargs) -> None:
    """Accept an option of the group after the verb too; it wins only when given there."""
    parser.add_argument(*flags, default=argparse.SUPPRESS, help=help_text, **kwargs)


def finish(parser: argparse.ArgumentParser) -> None:
    """Below ``parser`` (and for it): groups print their help when no verb follows, and
    subcommands without a description get their help line as one."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            action.required = False
            if parser.get_default("func") is None:
                parser.set_defaults(func=_printer(parser))
            lines = {choice.dest: choice.help or "" for choice in action._choices_actions}
            for name, child in action.choices.items():
                if not child.description and lines.get(name):
                    child.description = lines[name][:1].upper() + lines[name][1:] + "."
                finish(child)


def _printer(parser: argparse.ArgumentParser):
    def print_help(_args) -> int:
        parser.print_help()
        return 0
    return print_help
