"""Reading the listed fields out of feedback documents of every client's shape."""

from __future__ import annotations

import pytest

from onehop.client.feedback.document import feedback_document, summarize


@pytest.mark.parametrize("platform", ["android", "windows"])
def test_the_client_version_of_psiphon_apps_is_read_from_psiphon_info(platform):
    # Psiphon's Android and Windows apps put their embedded values under
    # DiagnosticInfo.SystemInformation.PsiphonInfo (Psiphon's feedback decryptor reads
    # CLIENT_VERSION there for both platforms).
    document = {"Metadata": {"platform": platform, "version": 4, "id": "0123456789abcdef"},
                "DiagnosticInfo": {"SystemInformation": {"PsiphonInfo": {
                    "PROPAGATION_CHANNEL_ID": "FFFFFFFFFFFFFFFF", "SPONSOR_ID": "FFFFFFFFFFFFFFFF",
                    "CLIENT_VERSION": "389"}}},
                "Feedback": {"email": "", "Message": {"text": "hi"}}}
    summary = summarize(document)
    assert summary.client_version == "389"
    assert (summary.platform, summary.format_version, summary.message) == (platform, "4", "hi")


def test_onehop_documents_keep_their_client_version():
    document = feedback_document("m", "", {"SystemInformation": {"clientVersion": "41"}},
                                 feedback_id="00", platform="linux")
    assert summarize(document).client_version == "41"


def test_a_document_without_a_version_has_none():
    assert summarize({"DiagnosticInfo": {"SystemInformation": {"PsiphonInfo": "odd"}}}).client_version == ""
    assert summarize({"raw": "text"}).client_version == ""
