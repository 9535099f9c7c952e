"""Templates, MIME structure of the replies, determinism, DKIM signing and verification."""

from __future__ import annotations

import re
from email import message_from_bytes
from email.policy import default as default_policy
from pathlib import Path

import dkim
import pytest

from onehop.errors import ConfigError
from onehop.mail import dkimtools
from onehop.mail.config import Attachment, Campaign
from onehop.mail.render import (
    ATTACHMENT,
    LINKS,
    ReplySpec,
    compose_replies,
    encode_attachment,
    render,
)
from onehop.mail.templates import (
    KINDS,
    PLACEHOLDERS,
    default_templates_dir,
    load_templates,
)

from .helpers import BUILD, BUILD_NAME, dnsfunc_for

TEMPLATES = load_templates()
ENCODED = encode_attachment(BUILD)
CAMPAIGN = Campaign(address="get@example.org", campaign_id="c1", channel_id="ch1", channel_name="Alpha <b>&",
                    sponsor_id="s1", sponsor_name="Sponsor", language=None,
                    links=("https://dl.example.net/a.zip", "https://m.example.com/b?x=1&y=<2>"),
                    attachment=Attachment(Path("/unused"), BUILD_NAME, "application/zip"))


def specs(language: str = "en", campaign: Campaign = CAMPAIGN, **kwargs) -> list[ReplySpec]:
    args = dict(to="person@users.test", language=language, date="Mon, 01 Jan 2024 10:00:00 +0000",
                message_ids=["<m1@example.org>", "<m2@example.org>"], in_reply_to="<req@users.test>",
                references=("<old@users.test>",), attachment_sha256="ab" * 32)
    args.update(kwargs)
    return compose_replies(campaign, **args)


def test_packaged_templates_cover_four_languages_completely():
    assert TEMPLATES.supported >= {"en", "fa", "ru", "zh"}
    assert TEMPLATES.get("fa").direction == "rtl" and TEMPLATES.get("en").direction == "ltr"
    for lang in TEMPLATES.supported:
        t = TEMPLATES.get(lang)
        for kind in KINDS:
            ids = set(t.text[kind].get_identifiers()) | set(t.html[kind].get_identifiers())
            assert ids <= PLACEHOLDERS
            assert "links" in t.text[LINKS].get_identifiers() and "filename" in t.text[ATTACHMENT].get_identifiers()
            assert t.subjects[kind]


def test_a_broken_template_directory_lists_every_problem(tmp_path):
    for lang in ("en", "xx"):
        (tmp_path / lang).mkdir()
        for f in (default_templates_dir() / "en").iterdir():
            (tmp_path / lang / f.name).write_bytes(f.read_bytes())
    (tmp_path / "xx" / "links.txt").write_text("Hi $name")
    (tmp_path / "xx" / "attachment.html").unlink()
    (tmp_path / "xx" / "meta.json").write_text('{"name": "X", "direction": "up"}')
    with pytest.raises(ConfigError) as info:
        load_templates(tmp_path)
    text = str(info.value)
    assert "unknown placeholders: name" in text and "attachment.html" in text
    assert "links_subject" in text and "ltr or rtl" in text
    assert load_templates(default_templates_dir()).supported


def test_links_reply_is_multipart_alternative_with_escaped_html():
    links, attachment = specs()
    assert links.kind == LINKS and attachment.kind == ATTACHMENT
    msg = message_from_bytes(render(links, TEMPLATES), policy=default_policy)
    assert msg.get_content_type() == "multipart/alternative"
    assert msg["From"] == "get@example.org" and msg["To"] == "person@users.test"
    assert msg["Message-ID"] == "<m1@example.org>" and msg["In-Reply-To"] == "<req@users.test>"
    assert msg["References"] == "<old@users.test> <req@users.test>"
    assert msg["Auto-Submitted"] == "auto-replied" and msg["Content-Language"] == "en"
    assert msg["Date"] == "Mon, 01 Jan 2024 10:00:00 +0000"
    text = msg.get_body(("plain",)).get_content()
    html = msg.get_body(("html",)).get_content()
    for link in CAMPAIGN.links:
        assert link in text
    assert 'href="https://m.example.com/b?x=1&amp;y=&lt;2&gt;"' in html
    assert "Alpha &lt;b&gt;&amp;" in html and "<b>&" not in html.replace("<b>$", "")


def test_attachment_reply_is_multipart_mixed_with_the_build():
    _, spec = specs("fa")
    raw = render(spec, TEMPLATES, ENCODED)
    msg = message_from_bytes(raw, policy=default_policy)
    assert msg.get_content_type() == "multipart/mixed"
    (part,) = list(msg.iter_attachments())
    assert part.get_filename() == BUILD_NAME and part.get_content_type() == "application/zip"
    assert part.get_content() == BUILD
    assert msg.get_body(("plain",)).get_content().startswith("سلام")
    assert 'dir="rtl"' in msg.get_body(("html",)).get_content()
    assert msg["Content-Language"] == "fa" and "onehop" in msg["Subject"]


def test_the_spliced_attachment_matches_what_the_email_package_writes():
    from email.message import EmailMessage
    from email.policy import SMTP
    msg = EmailMessage(policy=SMTP)
    msg.set_content("x")
    msg.add_attachment(BUILD, maintype="application", subtype="zip", filename="a.zip")
    assert ENCODED.body in msg.as_bytes(policy=SMTP)
    with pytest.raises(ValueError):
        render(specs()[1], TEMPLATES, None)


def test_rendering_is_deterministic_and_survives_the_outbox():
    for spec in specs("zh"):
        again = ReplySpec.from_json(spec.to_json())
        assert again == spec
        assert render(again, TEMPLATES, ENCODED) == render(spec, TEMPLATES, ENCODED)
        assert b"\r\n" in render(spec, TEMPLATES, ENCODED) and b"\n\n" not in render(spec, TEMPLATES, ENCODED)


def test_a_campaign_without_links_or_build_gets_only_what_it_has():
    no_build = Campaign(**{**CAMPAIGN.__dict__, "attachment": None})
    assert [s.kind for s in specs(campaign=no_build)] == [LINKS]
    no_links = Campaign(**{**CAMPAIGN.__dict__, "links": ()})
    (only,) = specs(campaign=no_links)
    assert only.kind == ATTACHMENT and only.message_id == "<m1@example.org>"
    assert [s.kind for s in specs(attachment_sha256=None)] == [LINKS]


def test_dkim_signature_verifies_with_the_published_key(dkim_material):
    _, key, record = dkim_material
    dns = dnsfunc_for({b"mail2024._domainkey.example.org.": record})
    for spec in specs("ru"):
        signed = dkimtools.sign(render(spec, TEMPLATES, ENCODED), key)
        assert dkim.verify(signed, dnsfunc=dns)
        sig = dkim.DKIM(signed)
        sig.verify(dnsfunc=dns)
        fields = sig.signature_fields
        assert fields[b"a"] == b"rsa-sha256" and fields[b"c"] == b"relaxed/relaxed"
        assert fields[b"d"] == b"example.org" and fields[b"s"] == b"mail2024"
        signed_headers = set(re.sub(rb"\s+", b"", fields[b"h"]).split(b":"))
        assert {b"from", b"to", b"subject", b"date", b"message-id", b"mime-version", b"content-type"} \
            <= signed_headers
        tampered = signed.replace(b"Subject:", b"Subject: [changed]", 1)
        assert not dkim.verify(tampered, dnsfunc=dns)


def test_inbound_dkim_must_verify_and_align(dkim_material):
    _, key, record = dkim_material
    dns = dnsfunc_for({b"mail2024._domainkey.example.org.": record})
    msg = b"From: person@example.org\r\nTo: get@x.test\r\nSubject: hi\r\n\r\nplease\r\n"
    signed = dkimtools.sign(msg, key)
    assert dkimtools.verify_aligned(signed, "example.org", dns)
    assert dkimtools.verify_aligned(signed, "mail.example.org", dns)       # a subdomain of d=
    assert not dkimtools.verify_aligned(signed, "users.test", dns)         # signed by someone else
    assert not dkimtools.verify_aligned(msg, "example.org", dns)           # no signature
    assert not dkimtools.verify_aligned(signed.replace(b"please", b"pleaze"), "example.org", dns)
    assert not dkimtools.verify_aligned(signed, "example.org", dnsfunc_for({}))  # no key in DNS
    assert not dkimtools.verify_aligned(b"DKIM-Signature: v=1; garbage\r\n" + msg, "example.org", dns)
    assert not dkimtools.aligned("org", "example.org")


def test_dkim_key_problems_are_config_errors(tmp_path):
    bad = tmp_path / "bad.pem"
    bad.write_text("not a key")
    with pytest.raises(ConfigError, match="--dkim-key"):
        dkimtools.load_dkim_key(str(bad), "s", "example.org")
    with pytest.raises(ConfigError, match="cannot read"):
        dkimtools.load_dkim_key(str(tmp_path / "missing.pem"), "s", "example.org")
    assert "PRIVATE" not in repr(dkimtools.load_dkim_key.__doc__ or "")


def _bodies(message: bytes) -> tuple[str, str]:
    parsed = message_from_bytes(message, policy=default_policy)
    text = parsed.get_body(("plain",)).get_content()
    html = parsed.get_body(("html",)).get_content()
    return text, html


@pytest.mark.parametrize("lang", ["en", "fa", "ru", "zh"])
def test_the_attachment_reply_says_how_to_run_what_is_attached(lang):
    """Issue 16: the reply said "open it to install the app" for a zipapp that needs
    `python3 onehop-<channel>.zip client` and Python 3.11."""
    (_, zipapp) = specs(lang)
    assert zipapp.attachment_format == "zipapp"
    text, html = _bodies(render(zipapp, TEMPLATES, ENCODED))
    for body in (text, html):
        assert f"python3 {BUILD_NAME} client" in body and "3.11" in body and "127.0.0.1:1080" in body
        assert "$" not in body
    assert "open it to install" not in text
    standalone = Campaign(**{**CAMPAIGN.__dict__, "attachment": Attachment(Path("/unused"), "onehop-alpha",
                                                                           "application/octet-stream",
                                                                           "standalone")})
    (_, built) = specs(lang, standalone)
    text, _ = _bodies(render(built, TEMPLATES, ENCODED))
    assert "./onehop-alpha client" in text and "python3" not in text


def test_a_reply_queued_before_formats_existed_still_renders_as_zipapp():
    (_, zipapp) = specs("en")
    old = ReplySpec.from_json(zipapp.to_json().replace(',"attachment_format":"zipapp"', ""))
    assert old.attachment_format is None
    assert f"python3 {BUILD_NAME} client" in _bodies(render(old, TEMPLATES, ENCODED))[0]


def test_install_texts_are_checked_when_loaded(tmp_path):
    import json
    import shutil
    shutil.copytree(default_templates_dir() / "en", tmp_path / "en")
    meta = json.loads((tmp_path / "en" / "meta.json").read_text())
    meta["install"] = {"zipapp": "run $file", "dmg": "x"}
    (tmp_path / "en" / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(ConfigError) as info:
        load_templates(tmp_path)
    keys = {p.key.rsplit(":", 1)[-1] for p in info.value.problems}
    assert keys == {"install.zipapp", "install.standalone", "install.dmg"}
