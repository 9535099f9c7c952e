"""A plain ``pip install onehop`` (no extras) must run the client, servers, the demo and
feedback; commands of an extra must say which extra, not print a traceback. Simulated in
a subprocess where every extra's packages fail to import."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from onehop.cli import EXTRA_OF_MODULE

BLOCK_EXTRAS = textwrap.dedent(f"""
    import sys
    for name in {sorted(EXTRA_OF_MODULE)!r}:
        sys.modules[name] = None  # "import name" now raises ModuleNotFoundError
""")


def python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", BLOCK_EXTRAS + textwrap.dedent(code)],
                          capture_output=True, text=True, timeout=120)


def test_the_base_commands_import_without_any_extra():
    result = python("""
        import onehop.demo, onehop.client.app, onehop.server.service, onehop.server.generate
        import onehop.client.feedback.send, onehop.client.upgrade.install
        import onehop.feedback.commands_user, onehop.feedback.commands_operator  # send, receive, decrypt
        print("imported")
    """)
    assert result.returncode == 0 and "imported" in result.stdout, result.stderr


def test_an_extras_command_names_the_extra(tmp_path):
    result = python(f"""
        from onehop.cli import main
        sys.exit(main(["network", "--db", "sqlite:///{tmp_path}/net.db", "init"]))
    """)
    assert result.returncode == 2
    assert "pip install 'onehop[network]'" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "net.db").exists()
