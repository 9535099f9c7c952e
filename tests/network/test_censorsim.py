"""``discovery simulate --week``: the censorship week with and without heal (seeded, fast)."""

from __future__ import annotations

import pytest

from onehop.network.censorsim import WeekParams, simulate_week


def test_without_heal_the_censor_blocks_what_it_learns_and_nothing_is_launched():
    result = simulate_week(WeekParams(strategy="consistent", users=100, discovery=20, attacker_ips=5))
    first, last = result.days[0], result.days[-1]
    assert first.users_with_working_server == 1.0 and first.blocked == 0
    assert last.servers_launched == 0 and last.blocked == last.revealed_to_censor
    assert last.revealed_to_censor <= 4 + 5  # the embedded servers (the build) + one per /24 with consistent
    assert 0 < last.users_with_working_server < 1  # those who discovered an unrevealed server still work


def test_daily_heal_launches_replacements_within_the_cap_and_restores_users():
    params = dict(strategy="classic", users=100, discovery=20, attacker_ips=5, max_hosts=3)
    off, on = simulate_week(WeekParams(**params)), simulate_week(WeekParams(**params, heal=True))
    assert [d.servers_launched for d in on.days][-1] <= 3 * 6  # no heal on day 1; at most 3 per run after
    assert on.days[-1].servers_launched > 0 and off.days[-1].servers_launched == 0
    assert sum(d.users_with_working_server for d in on.days) > sum(d.users_with_working_server for d in off.days)
    assert on.days[-1].revealed_to_censor >= off.days[-1].revealed_to_censor  # replacements get enumerated too
    assert simulate_week(WeekParams(**params, heal=True)).as_dict() == on.as_dict()  # repeatable


def test_the_command_prints_and_plots(sqlite_cli, tmp_path):
    pytest.importorskip("matplotlib")
    rows = sqlite_cli.ok("discovery", "simulate", "--week", "--attacker-ips", "5", "--days", "3", "--users", "50",
                         "--discovery-servers", "10", "--plot", tmp_path / "week.png")
    assert [(r["strategy"], r["heal"]) for r in rows] == [("consistent", False), ("consistent", True),
                                                          ("classic", False), ("classic", True)]
    assert (tmp_path / "week.png").stat().st_size > 10_000
    assert "--users" in sqlite_cli.fails("discovery", "simulate", "--week", "--attacker-ips", "5", "--days", "3",
                                         "--users", "0", rc=2)
    assert sqlite_cli.ok("discovery", "simulate", "--attacker-ips", "5", "--days", "1", "--servers", "10")
