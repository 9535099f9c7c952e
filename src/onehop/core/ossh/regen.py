"""A small regular-expression *generator*: produces random bytes matching a pattern.

Psiphon describes OSSH prefixes with regex syntax ("GET /[a-z]{4} HTTP/1\\.1\\r\\n...").
Supported: literals, escapes (\\r \\n \\t \\xHH \\d \\w \\s and escaped punctuation),
``.``, character classes with ranges and negation, groups with ``|``, and the
quantifiers ``? * + {n} {n,} {n,m}`` (open-ended ones are capped at ``REPEAT_CAP``).
Generation works in byte mode: every character is one byte value 0..255.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..prng import SeededPRNG

REPEAT_CAP = 10
_ALL_BYTES = tuple(range(256))
_DIGITS = tuple(range(0x30, 0x3A))
_WORD = tuple(sorted(set(range(0x30, 0x3A)) | set(range(0x41, 0x5B)) | set(range(0x61, 0x7B)) | {0x5F}))
_SPACE = (0x09, 0x0A, 0x0B, 0x0C, 0x0D, 0x20)
_SIMPLE_ESCAPES = {"r": 0x0D, "n": 0x0A, "t": 0x09, "f": 0x0C, "v": 0x0B, "0": 0x00}
_CLASS_ESCAPES = {"d": _DIGITS, "w": _WORD, "s": _SPACE}


class PatternError(ValueError):
    """The generator pattern is malformed."""


@dataclass(frozen=True)
class _Choice:
    options: tuple[int, ...]  # byte values


@dataclass(frozen=True)
class _Repeat:
    node: _Node
    low: int
    high: int


@dataclass(frozen=True)
class _Alternation:
    branches: tuple[tuple[_Node, ...], ...]  # each branch a sequence of nodes


_Node = _Choice | _Repeat | _Alternation


class _Parser:
    def __init__(self, pattern: str) -> None:
        self.p = pattern
        self.i = 0

    def parse(self) -> _Alternation:
        node = self._alternation()
        if self.i != len(self.p):
            raise PatternError(f"unexpected {self.p[self.i]!r} at {self.i}")
        return node

    def _peek(self) -> str | None:
        return self.p[self.i] if self.i < len(self.p) else None

    def _take(self) -> str:
        if self.i >= len(self.p):
            raise PatternError("pattern ends unexpectedly")
        ch = self.p[self.i]
        self.i += 1
        return ch

    def _alternation(self) -> _Alternation:
        branches = [self._sequence()]
        while self._peek() == "|":
            self.i += 1
            branches.append(self._sequence())
        return _Alternation(tuple(branches))

    def _sequence(self) -> tuple[_Node, ...]:
        nodes: list[_Node] = []
        while self._peek() not in (None, "|", ")"):
            nodes.append(self._quantified(self._atom()))
        return tuple(nodes)

    def _atom(self) -> _Node:
        ch = self._take()
        if ch == "(":
            if self.p.startswith("?:", self.i):
                self.i += 2
            node = self._alternation()
            if self._take() != ")":
                raise PatternError("unbalanced parenthesis")
            return node
        if ch == "[":
            return self._char_class()
        if ch == ".":
            return _Choice(tuple(b for b in _ALL_BYTES if b != 0x0A))
        if ch == "\\":
            return _Choice(self._escape())
        if ch in "*+?{":
            raise PatternError(f"nothing to repeat at {self.i - 1}")
        return _Choice(tuple(ch.encode("utf-8"))) if ord(ch) < 256 else self._utf8_literal(ch)

    @staticmethod
    def _utf8_literal(ch: str) -> _Alternation:
        return _Alternation(((tuple(_Choice((b,)) for b in ch.encode("utf-8"))),))

    def _escape(self) -> tuple[int, ...]:
        ch = self._take()
        if ch in _SIMPLE_ESCAPES:
            return (_SIMPLE_ESCAPES[ch],)
        if ch in _CLASS_ESCAPES:
            return _CLASS_ESCAPES[ch]
        if ch == "x":
            digits = self.p[self.i:self.i + 2]
            try:
                value = int(digits, 16)
            except ValueError:
                raise PatternError(f"bad \\x escape at {self.i}") from None
            self.i += 2
            return (value,)
        if ord(ch) > 255:
            raise PatternError("escaped character outside byte range")
        return (ord(ch),)

    def _class_item(self) -> tuple[int, ...]:
        ch = self._take()
        return self._escape() if ch == "\\" else (ord(ch),)

    def _char_class(self) -> _Choice:
        negate = self._peek() == "^"
        if negate:
            self.i += 1
        chosen: set[int] = set()
        first = True
        while first or self._peek() != "]":
            first = False
            low = self._class_item()
            if self._peek() == "-" and self.p[self.i + 1:self.i + 2] not in ("]", ""):
                self.i += 1
                high = self._class_item()
                if len(low) != 1 or len(high) != 1 or low[0] > high[0]:
                    raise PatternError("bad range in character class")
                chosen.update(range(low[0], high[0] + 1))
            else:
                chosen.update(low)
        self._take()  # the closing bracket
        if any(b > 255 for b in chosen):
            raise PatternError("character class outside byte range")
        options = tuple(b for b in _ALL_BYTES if (b in chosen) != negate)
        if not options:
            raise PatternError("empty character class")
        return _Choice(options)

    def _quantified(self, node: _Node) -> _Node:
        while True:
            ch = self._peek()
            if ch == "?":
                low, high = 0, 1
            elif ch == "*":
                low, high = 0, REPEAT_CAP
            elif ch == "+":
                low, high = 1, REPEAT_CAP
            elif ch == "{":
                low, high = self._braces()
                node = _Repeat(node, low, high)
                continue
            else:
                return node
            self.i += 1
            node = _Repeat(node, low, high)

    def _braces(self) -> tuple[int, int]:
        end = self.p.find("}", self.i)
        if end < 0:
            raise PatternError("unterminated {")
        body = self.p[self.i + 1:end]
        self.i = end + 1
        low_text, sep, high_text = body.partition(",")
        try:
            low = int(low_text)
            high = low if not sep else (int(high_text) if high_text else low + REPEAT_CAP)
        except ValueError:
            raise PatternError(f"bad repetition {{{body}}}") from None
        if low < 0 or high < low or high > 65536:
            raise PatternError(f"bad repetition {{{body}}}")
        return low, high


def compile_pattern(pattern: str) -> _Alternation:
    """Parse ``pattern``; raises PatternError when it is malformed."""
    return _Parser(pattern).parse()


def generate(pattern: str, prng: SeededPRNG) -> bytes:
    """Random bytes matching ``pattern``, drawn from ``prng``."""
    out = bytearray()
    _emit(compile_pattern(pattern), prng, out)
    return bytes(out)


def _emit(node: _Node, prng: SeededPRNG, out: bytearray) -> None:
    if isinstance(node, _Choice):
        options = node.options
        out.append(options[0] if len(options) == 1 else options[prng.intn(len(options))])
    elif isinstance(node, _Repeat):
        for _ in range(prng.range(node.low, node.high) if node.high > node.low else node.low):
            _emit(node.node, prng, out)
    else:
        branches = node.branches
        branch = branches[0] if len(branches) == 1 else branches[prng.intn(len(branches))]
        for child in branch:
            _emit(child, prng, out)
