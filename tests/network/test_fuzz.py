"""Hypothesis fuzz for every parser and validator of operator input: only clean
ConfigErrors / ValueErrors / problem messages, never another exception; valid input
round-trips."""

from __future__ import annotations

import ipaddress
import json
import random
import string
from datetime import datetime, UTC

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from onehop.errors import ConfigError
from onehop.network import channels, db, hosts, ids
from onehop.network.entries import EntryBook
from onehop.network.keys import KeyPair, NetworkKeys
from onehop.network.psinetdoc import psinet_bytes, psinet_document
from onehop.network.responder import responder_bytes, slug
from onehop.network.simulate import attacker_addresses
from onehop.network.sponsors import parse_home_page
from onehop.network.state import NetworkState, SponsorRecord
from onehop.network.targets import parse_s3
from onehop.server.psinet import parse_psinet

REGIONS = st.from_regex(r"[A-Z]{2}", fullmatch=True) | st.just("None")
HOSTS = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?(\.[a-z]{2,6}){1,2}", fullmatch=True)
PATHS = st.text(alphabet=string.ascii_letters + string.digits + "/?=&%._~-", max_size=40)
URLS = st.builds(lambda scheme, host, path: f"{scheme}://{host}/{path}", st.sampled_from(["http", "https"]),
                 HOSTS, PATHS)


@given(st.text(max_size=300))
def test_home_page_spec_parser_never_crashes(text):
    try:
        region, url = parse_home_page(text)
    except ValueError as exc:
        assert str(exc)
        return
    assert region == "None" or len(region) == 2
    assert url.startswith(("http://", "https://"))


@given(REGIONS, URLS)
def test_home_page_specs_round_trip(region, url):
    assert parse_home_page(f"{region}={url}") == (region, url)
    assert parse_home_page(url) == ("None", url)


@given(st.text(max_size=200))
def test_s3_target_parser_never_crashes(text):
    try:
        location = parse_s3(text)
    except ConfigError as exc:
        assert all(p.key == "--to" for p in exc.problems)
        return
    assert text.startswith("s3://") and location.bucket


@given(st.from_regex(r"[a-z0-9][a-z0-9-]{1,40}[a-z0-9]", fullmatch=True),
       st.lists(st.from_regex(r"[A-Za-z0-9_-]{1,10}", fullmatch=True), max_size=4))
def test_s3_targets_round_trip(bucket, parts):
    location = parse_s3(f"s3://{bucket}/{'/'.join(parts)}/")
    assert (location.bucket, location.prefix) == (bucket, "/".join(parts))


@given(st.text(max_size=120))
def test_database_url_parser_never_crashes(text):
    try:
        db._parse_url(text)
    except ConfigError as exc:
        assert exc.problems[0].key == "--db"


@given(st.text(max_size=120), st.text(max_size=80), st.text(max_size=30))
def test_validators_return_messages_never_raise(text, email, language):
    for check in (ids.name_problem, hosts.region_problem, hosts.host_key_problem):
        assert check(text) is None or isinstance(check(text), str)
    for mechanism in ("email", "static-download", text):
        problems = channels._campaign_problems(mechanism, email or None, language or None)
        assert all(p.key.startswith("--") for p in problems)


@given(st.integers(min_value=1, max_value=3000), st.integers(min_value=0, max_value=2 ** 32))
def test_attacker_addresses_are_in_distinct_slash_24s(count, seed):
    addresses = attacker_addresses(count, random.Random(seed))
    networks = {ipaddress.ip_network(f"{a}/24", strict=False) for a in addresses}
    assert len(networks) == count
    assert all(ipaddress.ip_address("1.0.0.0") <= ipaddress.ip_address(a) < ipaddress.ip_address("224.0.0.0")
               for a in addresses)


UNUSED = KeyPair("", "")
PAGES = st.dictionaries(REGIONS, st.lists(URLS, min_size=1, max_size=3).map(tuple), max_size=4)


@settings(max_examples=100)
@given(st.lists(st.tuples(st.from_regex(r"[0-9A-F]{16}", fullmatch=True), st.text(max_size=30), PAGES, PAGES),
                max_size=4, unique_by=lambda t: t[0]),
       st.dictionaries(st.sampled_from(["Android", "iOS", "Windows", "Other"]),
                       st.lists(st.integers(1, 10 ** 12), min_size=1, max_size=5, unique=True).map(tuple)),
       st.sampled_from(["classic", "consistent"]))
def test_every_psinet_we_write_is_what_servers_parse(sponsors, versions, strategy):
    state = NetworkState(
        now=datetime(2030, 1, 1, tzinfo=UTC),
        keys=NetworkKeys(UNUSED, UNUSED, UNUSED, UNUSED, KeyPair("hmac-key", "")),
        settings={"discovery-strategy": strategy}, servers=(),
        sponsors=tuple(SponsorRecord(i, name, pages, mobile) for i, name, pages, mobile in sponsors),
        client_versions=versions)
    document = json.loads(psinet_bytes(psinet_document(state, EntryBook({}, {}))))
    parsed = parse_psinet(document)
    for sponsor_id, _, pages, mobile in sponsors:
        assert parsed.sponsors[sponsor_id].home_pages == pages
        assert parsed.sponsors[sponsor_id].mobile_home_pages == mobile
    assert parsed.client_versions == {p: tuple(sorted(v)) for p, v in versions.items()}
    assert parsed.discovery == {"strategy": strategy, "hmac_key": "hmac-key"}


@given(st.dictionaries(st.emails().map(str.lower), st.dictionaries(st.text(max_size=8), st.text(max_size=20),
                                                                    max_size=3), max_size=3),
       st.text(max_size=60))
def test_responder_document_is_json_and_slugs_are_harmless(addresses, name):
    assert json.loads(responder_bytes(addresses))["addresses"] == addresses
    assert set(slug(name, "ABC")) <= set(string.ascii_lowercase + string.digits + "-")


@pytest.fixture(scope="module")
def fuzz_cli(tmp_path_factory):
    from tests.network.conftest import TEST_RSA_BITS, NetworkCLI
    runner = NetworkCLI(f"sqlite:///{tmp_path_factory.mktemp('fuzz') / 'network.db'}")
    runner.ok("init", "--rsa-bits", TEST_RSA_BITS)
    return runner


@settings(max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(min_size=1, max_size=40), st.lists(st.text(max_size=60), max_size=3))
def test_sponsor_add_from_the_command_line_fails_cleanly(fuzz_cli, name, pages):
    args = ["sponsor", "add", "--name", name]
    for page in pages:
        args += ["--home-page", page]
    result = fuzz_cli.run(*args)
    assert result.rc in (0, 1, 2) and "Traceback" not in result.err
