"""Pure: which language a reply is written in.

The rule, first match wins (``supported`` is the set of template languages):

1. the ``+tag`` of the address written to, if it names a supported language
   (``get+fa@example.org`` -> fa): the requester's explicit choice;
2. the address's configured ``language`` (responder.json), primary subtag
   (``fa-IR`` -> fa, ``zh-Hans`` -> zh): the operator's choice for the campaign;
3. the request's own hints: ``Content-Language``, then ``Accept-Language`` (by q-value);
4. the script of the subject and the start of the text: Arabic script -> fa, Cyrillic ->
   ru, Han -> zh (the most frequent of these, with at least two letters of it);
5. English.

A step that names an unsupported language is skipped, never an error.
"""

from __future__ import annotations

from collections.abc import Iterable

DEFAULT_LANGUAGE = "en"

#: Script ranges -> the language we answer in when the request is written in it.
_SCRIPTS = (
    ("fa", ((0x0600, 0x06FF), (0x0750, 0x077F), (0xFB50, 0xFDFF), (0xFE70, 0xFEFF))),
    ("ru", ((0x0400, 0x04FF), (0x0500, 0x052F))),
    ("zh", ((0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0xF900, 0xFAFF))),
)
MIN_SCRIPT_LETTERS = 2


def primary(tag: str | None) -> str | None:
    """``zh-Hans`` -> ``zh``; None for something that is not a language tag."""
    if not tag:
        return None
    head = tag.strip().lower().replace("_", "-").split("-")[0]
    return head if head.isascii() and head.isalpha() and 2 <= len(head) <= 3 else None


def choose_language(supported: Iterable[str], *, tag: str | None = None, configured: str | None = None,
                    hints: Iterable[str] = (), text: str = "") -> str:
    available = frozenset(supported)
    for candidate in (primary(tag), primary(configured), *(primary(h) for h in hints)):
        if candidate in available:
            return candidate
    detected = detect_script(text)
    if detected in available:
        return detected
    return DEFAULT_LANGUAGE if DEFAULT_LANGUAGE in available else min(available)


def detect_script(text: str) -> str | None:
    """The language of the dominant non-Latin script in ``text`` (see _SCRIPTS), or None."""
    counts = dict.fromkeys((lang for lang, _ in _SCRIPTS), 0)
    for ch in text:
        code = ord(ch)
        if code < 0x0400:
            continue
        for lang, ranges in _SCRIPTS:
            if any(lo <= code <= hi for lo, hi in ranges):
                counts[lang] += 1
                break
    best = max(counts, key=lambda lang: counts[lang])
    return best if counts[best] >= MIN_SCRIPT_LETTERS else None
