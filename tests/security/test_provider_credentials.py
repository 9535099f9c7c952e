"""Cloud credentials never reach the database, the audit log, launch errors or the log.

Before the fix: ``provider add --endpoint-url http://KEY:SECRET@host`` stored the secret in
the providers table, and a connection error repeated the URL (so the secret) into the
launch's error, the audit record and stderr; the same came from ``AWS_ENDPOINT_URL``. And
``--log-level debug`` let botocore log every request it signs: the session token
(``x-amz-security-token``) and the request bodies (run-instances' UserData holds the
machine's SSH host private key).
"""

from __future__ import annotations

import os
import subprocess
import sys

from onehop.network.providers import LaunchRequest, ProviderError
from onehop.network.providers.aws import AwsProvider, settings_problems

SECRET, KEY_ID, TOKEN = "SeCrEtAcCeSsKeY0123456789", "AKIAUNIQUEKEYID00001", "SeSsIoNtOkEn0123456789"
DEAD = "127.0.0.1:1"  # nothing listens: connections are refused at once


def _aws_env(monkeypatch_or_env):
    values = {"AWS_ACCESS_KEY_ID": KEY_ID, "AWS_SECRET_ACCESS_KEY": SECRET, "AWS_SESSION_TOKEN": TOKEN,
              "AWS_DEFAULT_REGION": "us-east-1", "AWS_MAX_ATTEMPTS": "1", "AWS_RETRY_MODE": "standard"}
    if isinstance(monkeypatch_or_env, dict):
        monkeypatch_or_env.update(values)
    else:
        for name, value in values.items():
            monkeypatch_or_env.setenv(name, value)


def test_an_endpoint_url_with_credentials_is_refused():
    problems = settings_problems({"images": {"*": "ami-12345678"}, "endpoint_url": f"http://{KEY_ID}:{SECRET}@{DEAD}"})
    assert [p.key for p in problems] == ["--endpoint-url"]
    assert SECRET not in problems[0].message and KEY_ID not in problems[0].message


def test_a_connection_error_never_repeats_credentials_from_the_endpoint(monkeypatch):
    _aws_env(monkeypatch)
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://{KEY_ID}:{SECRET}@{DEAD}")
    provider = AwsProvider({"images": {"*": "ami-12345678"}}, poll=0.01, timeout=1)
    request = LaunchRequest("h1", "eu-central-1", (443,), "ssh-ed25519 AAAA", "", "ssh-ed25519 BBBB")
    try:
        provider.launch(request, lambda resource: None)
    except ProviderError as exc:
        message = str(exc)
    else:
        raise AssertionError("a launch against nothing succeeded")
    assert "127.0.0.1:1" in message and SECRET not in message and KEY_ID not in message


def test_debug_logging_never_shows_the_session_token(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    _aws_env(env)
    env["XDG_DATA_HOME"] = str(tmp_path)
    db = f"sqlite:///{tmp_path / 'network.db'}"

    def onehop(*args):
        return subprocess.run([sys.executable, "-m", "onehop.cli", *args], env=env, capture_output=True, text=True,
                              timeout=120)

    assert onehop("network", "--db", db, "init", "--rsa-bits", "2048").returncode == 0
    added = onehop("network", "--db", db, "provider", "add", "--name", "aws1", "--kind", "aws",
                   "--image", "ami-12345678", "--endpoint-url", f"http://{DEAD}")
    assert added.returncode == 0, added.stderr
    done = onehop("--log-level", "debug", "network", "--db", db, "host", "launch", "--provider", "aws1",
                  "--region", "eu-central-1")
    assert done.returncode != 0 and "import-key-pair" in done.stderr
    assert "DEBUG" in done.stderr  # debug logging was on
    assert TOKEN not in done.stderr and SECRET not in done.stderr
