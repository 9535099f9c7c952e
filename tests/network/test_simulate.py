"""``discovery simulate``: adversary enumeration against an ordinary user, per strategy."""

from __future__ import annotations

import random
from datetime import datetime, UTC

from onehop.network.simulate import simulate, synthetic_pool
from tests.network.conftest import small_network

START = datetime(2030, 1, 1, tzinfo=UTC)


def test_classic_leaks_more_over_time_than_consistent():
    pool = synthetic_pool(100, START, 7)
    classic = simulate(pool, "classic", "key", 20, 7, START, random.Random(1))
    consistent = simulate(pool, "consistent", "key", 20, 7, START, random.Random(1))
    assert classic.buckets == 10 and consistent.buckets is None
    # one address sees its bucket's 10 servers, hour by hour; 20 addresses most buckets
    assert 1 < classic.ordinary_user_learned <= 10
    assert consistent.ordinary_user_learned == 1  # no time component
    assert consistent.attacker_learned <= 20 < classic.attacker_learned
    assert classic.as_dict()["attacker_fraction"] == classic.attacker_learned / 100


def test_a_single_day_bounds_classic_by_hours():
    pool = synthetic_pool(10_000, START, 1)
    result = simulate(pool, "classic", "key", 1, 1, START, random.Random(2))
    assert result.ordinary_user_learned == result.attacker_learned <= 24


def test_cli_uses_the_database_pool_or_a_synthetic_one(cli):
    assert "no discovery servers" in cli.fails("discovery", "simulate", "--attacker-ips", "5", "--days", "1", rc=2)
    small_network(cli)
    rows = cli.ok("discovery", "simulate", "--attacker-ips", "5", "--days", "2")
    assert [(r["strategy"], r["pool"]) for r in rows] == [("classic", 1), ("consistent", 1)]
    assert all(r["attacker_learned"] == 1 for r in rows)
    rows = cli.ok("discovery", "simulate", "--attacker-ips", "50", "--days", "1", "--strategy", "consistent",
                  "--servers", "30", "--servers", "300")
    assert [r["pool"] for r in rows] == [30, 300]
    assert rows[0]["attacker_fraction"] > rows[1]["attacker_fraction"]
    err = cli.fails("discovery", "simulate", "--attacker-ips", "0", "--days", "0", rc=2)
    assert "--attacker-ips" in err and "--days" in err
