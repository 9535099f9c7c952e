"""canonical(): the URL an ETag is remembered under; it never answers None."""

from __future__ import annotations

import pytest

from onehop.client.transfer_urls import TransferURL, canonical


def test_the_first_url_allowed_from_the_first_attempt():
    later, first = TransferURL("https://a.example/x", 2), TransferURL("https://b.example/x")
    assert canonical([later, first]) == first


def test_the_first_url_when_every_one_waits_for_later_attempts():
    urls = [TransferURL("https://a.example/x", 1), TransferURL("https://b.example/x", 3)]
    assert canonical(urls) == urls[0]


def test_an_empty_list_is_refused_rather_than_answered_with_none():
    with pytest.raises(ValueError):
        canonical([])
