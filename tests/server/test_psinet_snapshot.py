"""The psinet snapshot: home pages per sponsor and region (Psiphon's GetHomepages rules)
and the client upgrade offer (integer comparison with the newest version)."""

from __future__ import annotations

import pytest

from onehop.server.psinet import UNKNOWN_REGION, PsinetSnapshot, parse_psinet


def keep_order(urls: list) -> None:
    """A shuffle that leaves the list as it is, so the expected order is known."""


def pages(*urls: str) -> list[dict]:
    return [{"region": "x", "url": u} for u in urls]


RAW = {
    "default_sponsor_id": "DEFAULT",
    "sponsors": {
        "DEFAULT": {
            "id": "DEFAULT",
            "home_pages": {"None": pages("https://default.example/?client_region=XX")},
        },
        "SPONSOR": {
            "id": "SPONSOR",
            "home_pages": {
                "US": pages("https://us.example/a", "https://us.example/b?client_region=XX"),
                "None": pages("https://any.example/?client_region=XX&x=1"),
                "FR": [],
            },
            "mobile_home_pages": {
                "US": pages("https://m.us.example/?client_region=XX"),
            },
        },
        "NOMOBILE": {
            "id": "NOMOBILE",
            "home_pages": {"None": pages("https://desktop.example/")},
            "mobile_home_pages": {},
        },
    },
    "client_versions": {
        "Windows": [{"version": "9"}, {"version": "10"}],
        "Android": [{"version": "250"}],
        "Empty": [],
    },
    "valid_server_entry_tags": {"tagA": True, "tagB": True},
    "discovery_servers": [{"discovery_date_range": ["a", "b"], "encoded_server_entry": "00"}],
}


@pytest.fixture
def snapshot() -> PsinetSnapshot:
    return parse_psinet(RAW)


# -- home pages -------------------------------------------------------------------------

def test_region_specific_pages_come_with_the_region_filled_in(snapshot):
    assert snapshot.homepages("SPONSOR", "US", False, keep_order) == [
        "https://us.example/a", "https://us.example/b?client_region=US"]


def test_unknown_region_falls_back_to_the_none_pages(snapshot):
    assert snapshot.homepages("SPONSOR", "DE", False, keep_order) == [
        "https://any.example/?client_region=DE&x=1"]


def test_region_with_an_empty_list_falls_back_too(snapshot):
    assert snapshot.homepages("SPONSOR", "FR", False, keep_order) == [
        "https://any.example/?client_region=FR&x=1"]


def test_client_with_unknown_region_gets_the_default_pages(snapshot):
    assert snapshot.homepages("SPONSOR", UNKNOWN_REGION, False, keep_order) == [
        "https://any.example/?client_region=None&x=1"]


def test_unknown_sponsor_falls_back_to_the_default_sponsor(snapshot):
    assert snapshot.homepages("0123456789ABCDEF", "US", False, keep_order) == [
        "https://default.example/?client_region=US"]


def test_no_default_sponsor_means_no_pages():
    snapshot = parse_psinet({"sponsors": RAW["sponsors"]})
    assert snapshot.homepages("UNKNOWN", "US", False, keep_order) == []


def test_mobile_clients_get_the_mobile_pages(snapshot):
    assert snapshot.homepages("SPONSOR", "US", True, keep_order) == ["https://m.us.example/?client_region=US"]


def test_mobile_table_replaces_the_desktop_one_when_it_exists(snapshot):
    # As Psiphon: a non-empty mobile table is used on its own ("None" fallback inside it).
    assert snapshot.homepages("SPONSOR", "DE", True, keep_order) == []


def test_mobile_without_mobile_pages_uses_the_desktop_pages(snapshot):
    assert snapshot.homepages("NOMOBILE", "US", True, keep_order) == ["https://desktop.example/"]


def test_pages_are_shuffled_with_the_given_shuffle(snapshot):
    seen = []

    def reverse(urls: list) -> None:
        seen.append(list(urls))
        urls.reverse()

    assert snapshot.homepages("SPONSOR", "US", False, reverse) == [
        "https://us.example/b?client_region=US", "https://us.example/a"]
    assert len(seen) == 1


def test_default_shuffle_returns_the_same_pages(snapshot):
    result = snapshot.homepages("SPONSOR", "US", False)
    assert sorted(result) == ["https://us.example/a", "https://us.example/b?client_region=US"]


@pytest.mark.parametrize("bad", [{"region": "None"}, {"url": 5}, "https://bare.example/"])
def test_home_page_entries_without_a_url_reject_the_file(bad):
    # A malformed file is refused as a whole, so the store keeps its last good snapshot.
    with pytest.raises(ValueError, match="url"):
        parse_psinet({"default_sponsor_id": "S", "sponsors": {"S": {"home_pages": {
            "None": [bad, {"url": "https://ok.example/"}]}}}})


# -- upgrades ---------------------------------------------------------------------------

def test_newer_version_is_offered(snapshot):
    assert snapshot.upgrade_client_version("200", "Android") == "250"


@pytest.mark.parametrize("current", ["250", "251", "1000"])
def test_same_or_older_version_is_not_offered(snapshot, current):
    assert snapshot.upgrade_client_version(current, "Android") is None


def test_versions_compare_as_integers_not_text(snapshot):
    # "10" < "9" as text; as integers 10 is the newest Windows version.
    assert snapshot.upgrade_client_version("9", "Windows") == "10"
    assert snapshot.upgrade_client_version("10", "Windows") is None
    assert snapshot.upgrade_client_version("100", "Windows") is None


def test_newest_is_found_whatever_the_file_order():
    snapshot = parse_psinet({"client_versions": {"Windows": [{"version": "12"}, {"version": "3"}]}})
    assert snapshot.upgrade_client_version("5", "Windows") == "12"


@pytest.mark.parametrize("platform", ["iOS", "", "Empty"])
def test_unknown_platform_gets_no_offer(snapshot, platform):
    assert snapshot.upgrade_client_version("1", platform) is None


@pytest.mark.parametrize("current", ["", "abc", "1.2", "v3"])
def test_non_numeric_client_version_gets_no_offer(snapshot, current):
    assert snapshot.upgrade_client_version(current, "Android") is None


# -- parsing ----------------------------------------------------------------------------

def test_parse_keeps_tags_discovery_and_raw(snapshot):
    assert snapshot.valid_server_entry_tags == frozenset({"tagA", "tagB"})
    assert snapshot.discovery_servers == tuple(RAW["discovery_servers"])
    assert snapshot.default_sponsor_id == "DEFAULT"
    assert snapshot.client_versions["Windows"] == (9, 10)
    assert snapshot.raw is RAW


def test_empty_database_is_an_empty_snapshot():
    snapshot = parse_psinet({})
    assert snapshot.sponsors == {} and snapshot.client_versions == {}
    assert snapshot.homepages("X", "US", False, keep_order) == []
    assert snapshot.upgrade_client_version("1", "Windows") is None


@pytest.mark.parametrize("raw", [[], "text", 1, None])
def test_top_level_must_be_an_object(raw):
    with pytest.raises(ValueError):
        parse_psinet(raw)  # type: ignore[arg-type]


def test_non_numeric_published_version_is_malformed():
    with pytest.raises(ValueError):
        parse_psinet({"client_versions": {"Windows": [{"version": "1.2"}]}})


@pytest.mark.parametrize("raw", [
    {"sponsors": ["SPONSOR"]},
    {"sponsors": {"S": "not an object"}},
    {"sponsors": {"S": {"home_pages": ["https://x.example/"]}}},
    {"client_versions": ["Windows"]},
])
def test_wrong_shapes_are_reported_as_value_errors(raw):
    with pytest.raises(ValueError):
        parse_psinet(raw)
