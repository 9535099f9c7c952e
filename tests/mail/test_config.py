"""responder.json: strict validation (every problem with its key) and address lookup."""

from __future__ import annotations

import json

import pytest

from onehop.errors import ConfigError
from onehop.mail.config import MAX_ATTACHMENT_BYTES, load_responder_config

from .helpers import (
    ADDRESS,
    BUILD,
    BUILD_NAME,
    FA_ADDRESS,
    LINKS,
    campaign_entry,
    write_export,
)


def keys(exc: ConfigError) -> set[str]:
    return {p.key for p in exc.problems}


def test_the_exported_schema_loads(tmp_path):
    path = write_export(tmp_path)
    config = load_responder_config(path)
    assert set(config.campaigns) == {ADDRESS, FA_ADDRESS}
    c = config.campaigns[ADDRESS]
    assert c.links == tuple(LINKS) and c.language is None and c.channel_name == "Alpha <&> channel"
    assert c.attachment.filename == BUILD_NAME and c.attachment.content_type == "application/zip"
    assert c.attachment.path == tmp_path / "mail" / "builds" / "c1.pyz"
    assert c.attachment.path.read_bytes() == BUILD
    assert config.campaigns[FA_ADDRESS].language == "fa"


def test_an_address_without_an_attachment_or_links(tmp_path):
    path = write_export(tmp_path, {ADDRESS: campaign_entry(attachment=False),
                                   "empty@example.org": campaign_entry("c3", links=[], attachment=False)})
    config = load_responder_config(path)
    assert config.campaigns[ADDRESS].attachment is None and config.campaigns[ADDRESS].has_content
    assert not config.campaigns["empty@example.org"].has_content


def test_lookup_exact_case_insensitive_and_plus_tags(tmp_path):
    config = load_responder_config(write_export(tmp_path))
    assert config.lookup("GET@Example.org").campaign.address == ADDRESS
    match = config.lookup("<get+fa@example.org>")
    assert match.campaign.address == ADDRESS and match.tag == "fa"
    assert config.lookup("get+@example.org").tag is None
    assert config.lookup("other@example.org") is None
    assert config.lookup("get@example.org.evil.test") is None
    assert config.lookup("not an address") is None


def test_every_problem_is_listed_with_its_key(tmp_path):
    (tmp_path / "mail" / "builds").mkdir(parents=True)
    (tmp_path / "mail" / "builds" / "big.pyz").write_bytes(b"x")
    bad = campaign_entry()
    bad.update(channel_name="", sponsor_id=7, language="Farsi!", links=["ftp://x", "https://ok.example/a", 3],
               extra="?")
    bad["attachment"] = {"path": "../outside.zip", "filename": "setup.exe", "content_type": "zip"}
    doc = {"version": 2, "addresses": {
        "Upper@Example.org": campaign_entry("c2"),
        "get@example.org": bad,
        "missing@example.org": {"campaign_id": "c9"},
        "nofile@example.org": campaign_entry("c4") | {"attachment": {"path": "builds/none.pyz",
                                                                     "filename": "a.zip",
                                                                     "content_type": "application/zip"}},
        "notadict@example.org": [],
    }, "surprise": 1}
    path = tmp_path / "mail" / "responder.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(ConfigError) as info:
        load_responder_config(path)
    found = keys(info.value)
    p = "addresses.get@example.org."
    expected = {"version", "surprise", "addresses.Upper@Example.org",
                p + "channel_name", p + "sponsor_id", p + "language", p + "links[0]", p + "links[2]", p + "extra",
                p + "attachment.path", p + "attachment.filename", p + "attachment.content_type",
                "addresses.missing@example.org.channel_id", "addresses.missing@example.org.links",
                "addresses.nofile@example.org.attachment.path", "addresses.notadict@example.org"}
    assert expected <= found, expected - found
    assert p + "links[1]" not in found
    messages = {p.key: p.message for p in info.value.problems}
    assert "lowercased" in messages["addresses.Upper@Example.org"]
    assert "harmless" in messages[p + "attachment.filename"]
    assert "file not found" in messages["addresses.nofile@example.org.attachment.path"]
    assert str(path) in str(info.value)


@pytest.mark.parametrize("text, problem", [
    ("{not json", "not valid JSON"),
    ("[]", "top level"),
])
def test_unreadable_files(tmp_path, text, problem):
    path = tmp_path / "responder.json"
    path.write_text(text)
    with pytest.raises(ConfigError, match=problem):
        load_responder_config(path)


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="file not found"):
        load_responder_config(tmp_path / "nope.json")


def test_attachment_limits(tmp_path):
    entry = campaign_entry()
    path = write_export(tmp_path, {ADDRESS: entry})
    (path.parent / "builds" / "c1.pyz").write_bytes(b"")
    with pytest.raises(ConfigError, match="empty file"):
        load_responder_config(path)
    with open(path.parent / "builds" / "c1.pyz", "wb") as f:
        f.truncate(MAX_ATTACHMENT_BYTES + 1)
    with pytest.raises(ConfigError, match="too large to mail"):
        load_responder_config(path)


@pytest.mark.parametrize("rel", ["/etc/passwd", "builds/../../x", "..\\x", ""])
def test_attachment_paths_stay_inside(tmp_path, rel):
    entry = campaign_entry()
    entry["attachment"]["path"] = rel
    path = tmp_path / "responder.json"
    path.write_text(json.dumps({"version": 1, "addresses": {ADDRESS: entry}}))
    with pytest.raises(ConfigError) as info:
        load_responder_config(path)
    assert f"addresses.{ADDRESS}.attachment.path" in keys(info.value)
