"""Issue 16 item 10: every command and option of ``onehop`` explains itself in ``--help``.

The walk builds the real parser and recurses into every subparser, so a command added
later without a description, or an option without help text, fails here. Options hidden
on purpose (old spellings kept as aliases) use ``argparse.SUPPRESS`` and are skipped.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import subprocess
import sys
from importlib.metadata import version

import pytest

from onehop.cli import build_parser, main


def _walk(parser: argparse.ArgumentParser, path: tuple[str, ...]):
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield from _walk(child, (*path, name))


def _subcommand_lines(parser: argparse.ArgumentParser) -> dict[str, str | None]:
    """The one-line help each subcommand shows in its parent's listing."""
    lines = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            listed = {choice.dest: choice.help for choice in action._choices_actions}
            for name in action.choices:
                lines[name] = listed.get(name)
    return lines


def _problems() -> list[str]:
    problems = []
    for path, parser in _walk(build_parser(), ("onehop",)):
        where = " ".join(path)
        if not (parser.description or "").strip():
            problems.append(f"{where}: no description")
        for name, line in _subcommand_lines(parser).items():
            if line is None or not line.strip():
                problems.append(f"{where} {name}: no help line in the listing")
        for action in parser._actions:
            if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
                continue
            if action.help == argparse.SUPPRESS:
                continue  # a hidden alias
            if action.help is None or not str(action.help).strip():
                problems.append(f"{where} {'/'.join(action.option_strings) or action.dest}: no help text")
    return problems


def test_every_command_and_option_has_help():
    assert _problems() == []


def test_every_help_page_renders():
    for path, parser in _walk(build_parser(), ("onehop",)):
        assert parser.format_help().strip(), path


def test_bare_onehop_prints_help_and_exits_zero():
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main([]) == 0
    assert "usage: onehop" in out.getvalue() and "network" in out.getvalue()


@pytest.mark.parametrize("group", ["network", "feedback", "server", "mail", "lab"])
def test_a_group_without_a_verb_prints_its_help(group):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main([group]) == 0
    assert f"usage: onehop {group}" in out.getvalue()


def test_version_comes_from_the_package_metadata():
    result = subprocess.run([sys.executable, "-m", "onehop.cli", "--version"], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"onehop {version('onehop')}"
