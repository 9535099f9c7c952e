"""Candidate selection: the affinity server first and the rest shuffled; only entries that
fit the user's region and protocol limits and speak the SSH API are usable; MemoryStore
keys entries by IP."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from onehop.client.candidates import MemoryStore, available_regions, order_candidates, usable
from onehop.core.serverentry import decode_server_entry
from onehop.server.generate import generate_server
from tests.helpers.builders import make_entry

ALL = ("OSSH", "OSSH-PREFIX", "SSH")


def ips(n: int) -> list[str]:
    return [f"198.51.100.{i + 1}" for i in range(n)]


# -- order ------------------------------------------------------------------------------

@given(n=st.integers(0, 12), affinity_index=st.integers(-1, 12), seed=st.integers(0, 2**32))
def test_affinity_first_and_the_rest_is_a_permutation(n, affinity_index, seed):
    entries = [make_entry(ip) for ip in ips(n)]
    affinity = entries[affinity_index].ip_address if 0 <= affinity_index < n else "203.0.113.250"
    first, rest = order_candidates(entries, affinity, random.Random(seed))
    if 0 <= affinity_index < n:
        assert first is entries[affinity_index]
        expected_rest = [e for e in entries if e is not first]
    else:
        assert first is None
        expected_rest = entries
    assert sorted(map(id, rest)) == sorted(map(id, expected_rest))
    assert len(rest) == len(expected_rest)


def test_no_affinity_means_no_first():
    entries = [make_entry(ip) for ip in ips(3)]
    first, rest = order_candidates(entries, None, random.Random(1))
    assert first is None and len(rest) == 3


def test_input_list_is_not_reordered():
    entries = [make_entry(ip) for ip in ips(6)]
    before = list(entries)
    order_candidates(entries, entries[2].ip_address, random.Random(3))
    assert entries == before and all(a is b for a, b in zip(entries, before))


def test_rest_is_shuffled_by_the_given_rng():
    entries = [make_entry(ip) for ip in ips(8)]
    orders = {tuple(e.ip_address for e in order_candidates(entries, None, random.Random(seed))[1])
              for seed in range(20)}
    assert len(orders) > 1  # not a fixed order
    again = [order_candidates(entries, None, random.Random(7))[1] for _ in range(2)]
    assert [e.ip_address for e in again[0]] == [e.ip_address for e in again[1]]  # reproducible


# -- usable -----------------------------------------------------------------------------

def test_entry_of_a_generated_server_is_usable():
    entry = decode_server_entry(generate_server("198.51.100.9", ssh_port=22).encoded_entry)
    assert usable(entry, "", ALL)
    assert usable(entry, "", ("SSH",)) and usable(entry, "", ("OSSH-PREFIX",))


def test_region_limit():
    entry = make_entry("198.51.100.1", region="DE")
    assert usable(entry, "", ALL)
    assert usable(entry, "DE", ALL)
    assert not usable(entry, "US", ALL)
    assert not usable(make_entry("198.51.100.2"), "DE", ALL)  # no region: not in DE


@pytest.mark.parametrize("capabilities, ssh_port, ossh_port, protocols, expected", [
    (("OSSH", "ssh-api-requests"), None, 443, ("SSH",), False),
    (("OSSH", "ssh-api-requests"), None, 443, ("OSSH",), True),
    (("OSSH", "ssh-api-requests"), None, 443, ("OSSH-PREFIX",), True),
    (("SSH", "ssh-api-requests"), 22, None, ("OSSH", "OSSH-PREFIX"), False),
    (("SSH", "ssh-api-requests"), 22, None, ("SSH",), True),
    (("OSSH", "SSH", "ssh-api-requests"), 22, None, ("OSSH",), False),  # OSSH without a port
    (("ssh-api-requests",), 22, 443, ALL, False),                     # ports without capabilities
])
def test_protocol_limit(capabilities, ssh_port, ossh_port, protocols, expected):
    entry = make_entry("198.51.100.1", capabilities=capabilities, ssh_port=ssh_port, ossh_port=ossh_port)
    assert usable(entry, "", protocols) is expected


def test_ssh_api_requests_capability_is_required():
    entry = make_entry("198.51.100.1", capabilities=("OSSH", "SSH"))
    assert not usable(entry, "", ALL)
    legacy_web_api = make_entry("198.51.100.2", capabilities=("OSSH", "SSH", "handshake"))
    assert not usable(legacy_web_api, "", ALL)


def test_prefix_only_limit_respects_disable_ossh_prefix():
    entry = make_entry("198.51.100.1", disable_ossh_prefix=True)
    assert not usable(entry, "", ("OSSH-PREFIX",))
    assert usable(entry, "", ("OSSH",))


# -- MemoryStore ------------------------------------------------------------------------

def test_memory_store_keys_by_ip_and_reimport_replaces():
    store = MemoryStore([make_entry("198.51.100.1", region="DE"), make_entry("198.51.100.2")])
    assert sorted(e.ip_address for e in store.entries()) == ["198.51.100.1", "198.51.100.2"]
    count = store.import_entries([make_entry("198.51.100.1", region="NL")], "REMOTE")
    assert count == 1
    entries = {e.ip_address: e for e in store.entries()}
    assert len(entries) == 2 and len(store.entries()) == 2
    assert entries["198.51.100.1"].region == "NL"


def test_memory_store_duplicates_in_one_import_keep_the_last():
    store = MemoryStore()
    assert store.import_entries([make_entry("198.51.100.1", region="DE"),
                                 make_entry("198.51.100.1", region="FR")], "EMBEDDED") == 2
    (entry,) = store.entries()
    assert entry.region == "FR"


def test_memory_store_affinity():
    store = MemoryStore([make_entry("198.51.100.1")])
    assert store.affinity() is None
    store.set_affinity("198.51.100.1")
    assert store.affinity() == "198.51.100.1"
    first, rest = order_candidates(store.entries(), store.affinity(), random.Random(0))
    assert first is not None and first.ip_address == "198.51.100.1" and rest == []


def test_entries_returns_a_copy():
    store = MemoryStore([make_entry("198.51.100.1")])
    store.entries().clear()
    assert len(store.entries()) == 1


def test_available_regions_are_sorted_and_unique():
    entries = [make_entry("198.51.100.1", region="US"), make_entry("198.51.100.2", region="DE"),
               make_entry("198.51.100.3", region="US"), make_entry("198.51.100.4")]
    assert available_regions(entries) == ["DE", "US"]
