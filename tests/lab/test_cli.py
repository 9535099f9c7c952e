"""``onehop lab run``: arguments, exit status, the JSON report and the plot."""

from __future__ import annotations

import json

import pytest

from onehop.cli import main
from onehop.lab import session
from onehop.lab.report import JSON_KEYS, Observation, write_plot

OBSERVATIONS = [
    Observation("ssh-dpi", "ssh-dpi", "SSH", "blocked", "blocked", None, 0, "blocked by DPI"),
    Observation("ssh-dpi", "ssh-dpi", "OSSH", "pass", "pass", 0.08, 262144),
    Observation("active-prober", "active-prober", "SSH", "blocked", "blocked", 0.1, 0),
]


@pytest.fixture
def fake_run(monkeypatch):
    calls = []

    def install(observations):
        async def run_scenarios(names, mode, settings=None):
            calls.append((list(names), mode))
            return list(observations)
        monkeypatch.setattr(session, "run_scenarios", run_scenarios)
        return calls
    return install


def test_report_plot_and_exit_zero(fake_run, tmp_path, capsys):
    calls = fake_run(OBSERVATIONS)
    report, plot = tmp_path / "r.json", tmp_path / "p.png"
    assert main(["lab", "run", "all", "--mode", "relay", "--report", str(report), "--plot", str(plot)]) == 0
    assert calls == [(list(session.SCENARIOS), "relay")]
    data = json.loads(report.read_text())
    assert [tuple(item) for item in data] == [JSON_KEYS] * 3
    assert data[1] == {"scenario": "ssh-dpi", "censor": "ssh-dpi", "protocol": "OSSH", "expected": "pass",
                       "observed": "pass", "seconds_to_tunnel": 0.08, "bytes": 262144}
    assert plot.read_bytes().startswith(b"\x89PNG")
    out = capsys.readouterr().out
    assert "== ssh-dpi ==" in out and "== active-prober ==" in out and "3 of 3 observations as expected" in out


def test_a_mismatch_exits_non_zero(fake_run, capsys):
    fake_run([Observation("entropy", "fet", "OSSH", "blocked", "pass", 0.1, 262144)])
    assert main(["lab", "run", "entropy", "--mode", "relay"]) == 1
    assert "MISMATCH" in capsys.readouterr().out


def test_unknown_scenario_and_mode(capsys):
    assert main(["lab", "run", "nonsense", "--mode", "relay"]) == 2
    assert "SCENARIO" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["lab", "run", "all", "--mode", "bogus"])


def test_relay_mode_is_always_available():
    assert session.resolve_mode("relay") == "relay"
    assert session.resolve_mode("auto") in ("relay", "netns")


def test_plot_of_every_outcome(tmp_path):
    path = tmp_path / "plot.png"
    write_plot(OBSERVATIONS + [Observation("x", "c", "OSSH", "pass", "blocked", None, 0)], str(path), 8.0)
    assert path.stat().st_size > 10_000
