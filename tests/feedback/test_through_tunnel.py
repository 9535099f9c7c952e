"""With a tunnel up, feedback leaves through it (a real onehop server on loopback)."""

from __future__ import annotations

import json

import pytest

from onehop.client.feedback.send import send_feedback_from
from onehop.client.feedback.upload import UploadPolicy
from onehop.client.transfer_urls import encode_transfer_url
from onehop.core.feedbackcrypto import decrypt
from tests.e2e.conftest import make_client, network, notice_log  # noqa: F401  (fixtures)
from tests.helpers.channels import record_channel_opens

pytestmark = pytest.mark.e2e


async def test_feedback_goes_through_the_tunnel(network, make_client, feedback_keys, upload_server):  # noqa: F811
    private, public = feedback_keys
    server = await network.add()
    controller = await make_client([server.entry],
                                   feedback_upload_urls=(encode_transfer_url(upload_server.url("/fb")),),
                                   feedback_encryption_public_key=public)
    opened = record_channel_opens(controller)
    result = await send_feedback_from(controller, f"slow on {server.entry.ip_address}",
                                      policy=UploadPolicy(2, (0, 0), 10.0))
    assert result.uploaded
    assert ("127.0.0.1", upload_server.port) in opened
    document = json.loads(decrypt(upload_server.files[f"/fb/{result.upload_id}"], private))
    assert document["Feedback"]["Message"]["text"] == f"slow on {server.entry.ip_address}"  # a known server
    stats = document["DiagnosticInfo"]["ConnectionStatistics"]
    assert stats["tunnelUp"] is True and stats["tunnelsEstablished"] >= 1
