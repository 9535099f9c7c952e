"""``onehop mail stats`` reads counters from before the reason vocabulary (kebab-case)."""

from onehop.errors import MailReason
from onehop.mail.stats import rows_from

DAY, ADDRESS = "2026-11-25", "get@example.org"


def test_old_and_new_spellings_of_a_reason_add_up():
    (row,) = rows_from([(DAY, ADDRESS, "rejected:rate-limit", 2), (DAY, ADDRESS, "rejected:rate_limit", 1),
                        (DAY, ADDRESS, "failed:relay-refused", 1), (DAY, ADDRESS, "rejected:not-a-reason", 4)])
    assert row.rejected == {MailReason.RATE_LIMIT: 3, "not-a-reason": 4}  # unknown text is kept as it was
    assert row.failed == {MailReason.RELAY_REFUSED: 1}
