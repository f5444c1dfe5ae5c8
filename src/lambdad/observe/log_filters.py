"""CloudWatch Logs filter patterns, compiled once into a predicate over a log message.

Three kinds of pattern, as CloudWatch Logs reads them:

- **Terms** (``ERROR "disk full" ?WARN -Throttled``): every plain or quoted term must occur
  in the message (case-sensitive), at least one ``?`` term when there are any, and no ``-``
  term. ``%regex%`` is a regular-expression term.
- **JSON** (``{ ($.level = "ERROR" || $.latency > 500) && $.user.id != "root*" }``): the
  message must be a JSON object; selectors are ``$.a.b`` and ``$.a[0]``; operators ``=``
  ``!=`` ``<`` ``<=`` ``>`` ``>=``, ``IS NULL`` / ``IS TRUE`` / ``IS FALSE``, ``NOT EXISTS``;
  ``*`` is a wildcard in string values, ``%regex%`` a regular expression.
- **Space-delimited** (``[ip, user, ..., status=4*, bytes > 1000]``): the message is split on
  spaces (``"..."`` and ``[...]`` keep spaces inside one field); ``...`` stands for any number
  of fields; a field may carry a condition, joined by ``&&`` / ``||``.

:func:`compile_pattern` raises :class:`InvalidFilterPattern` for a malformed pattern.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from typing import Any

import msgspec

Matcher = Callable[[str], bool]


class InvalidFilterPattern(ValueError):
    """The pattern does not parse."""


def _everything(_message: str) -> bool:
    return True


@functools.lru_cache(maxsize=256)
def compile_pattern(pattern: str | None) -> Matcher:
    """The predicate of ``pattern`` (``None`` or blank: every message)."""
    text = (pattern or "").strip()
    if not text:
        return _everything
    if text.startswith("{"):
        return _JsonParser(text).parse()
    if text.startswith("["):
        return _delimited(text)
    return _terms(text)


# ----------------------------------------------------------------------------- terms


def _split_terms(text: str) -> list[str]:
    """Whitespace-separated words; a ``"..."`` keeps its spaces (and is kept quoted)."""
    words: list[str] = []
    i, n = 0, len(text)
    while i < n:
        if text[i].isspace():
            i += 1
            continue
        start = i
        while i < n and not text[i].isspace():
            if text[i] == '"':
                end = text.find('"', i + 1)
                if end < 0:
                    raise InvalidFilterPattern(text)
                i = end + 1
            elif text[i] == "%" and i - start <= 1 and text[start] in "%?-":
                end = text.find("%", i + 1)
                if end < 0:
                    raise InvalidFilterPattern(text)
                i = end + 1
            else:
                i += 1
        words.append(text[start:i])
    return words


def _term(word: str) -> Matcher:
    if len(word) >= 2 and word[0] == word[-1] == '"':
        needle = word[1:-1]
        if not needle:
            raise InvalidFilterPattern(word)
        return lambda m: needle in m
    if len(word) >= 2 and word[0] == word[-1] == "%":
        return _regex(word[1:-1]).search  # type: ignore[return-value]
    if '"' in word or any(c in word for c in "{}[]()"):
        raise InvalidFilterPattern(word)
    return lambda m: word in m


def _regex(source: str) -> re.Pattern[str]:
    if not source:
        raise InvalidFilterPattern("empty regular expression")
    try:
        return re.compile(source)
    except re.error as exc:
        raise InvalidFilterPattern(source) from exc


def _terms(text: str) -> Matcher:
    required: list[str] = []
    others: list[Matcher] = []
    optional: list[Matcher] = []
    excluded: list[Matcher] = []
    for word in _split_terms(text):
        if word[0] in "?-":
            if len(word) == 1:
                raise InvalidFilterPattern(text)
            (optional if word[0] == "?" else excluded).append(_term(word[1:]))
        elif word[0] == '"' or word[0] == "%":
            others.append(_term(word))
        else:
            _term(word)  # checks it
            required.append(word)
    if len(required) == 1 and not (others or optional or excluded):
        needle = required[0]
        return lambda m: needle in m  # the common case, kept to one test

    def match(message: str) -> bool:
        return (
            all(t in message for t in required)
            and all(f(message) for f in others)
            and (not optional or any(f(message) for f in optional))
            and not any(f(message) for f in excluded)
        )

    return match


# ----------------------------------------------------------------------------- values


_MISSING = object()


def _wildcard(value: str) -> Callable[[str], bool]:
    if "*" not in value:
        return value.__eq__
    parts = [re.escape(p) for p in value.split("*")]
    compiled = re.compile(".*".join(parts), re.DOTALL)
    return lambda s: compiled.fullmatch(s) is not None


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _compare(op: str, raw: str, quoted: bool, regex: bool) -> Callable[[Any], bool]:
    """A test of one extracted value (``_MISSING`` when the field is absent)."""
    if regex:
        pattern = _regex(raw)
        if op not in ("=", "!="):
            raise InvalidFilterPattern(raw)
        want = op == "="
        return lambda v: v is not _MISSING and (pattern.search(_text(v)) is not None) == want
    number = None if quoted else _number(raw)
    if op in ("<", "<=", ">", ">="):
        if number is None:
            raise InvalidFilterPattern(raw)
        test: Callable[[float], bool] = _ORDER[op](number)
        return lambda v: (n := _as_number(v)) is not None and test(n)
    if number is not None:
        equal: Callable[[Any], bool] = lambda v: (n := _as_number(v)) is not None and n == number  # noqa: E731
    else:
        matches = _wildcard(raw)
        equal = lambda v: isinstance(v, str) and matches(v)  # noqa: E731
    if op == "=":
        return lambda v: v is not _MISSING and equal(v)
    return lambda v: v is not _MISSING and not equal(v)


_ORDER: dict[str, Callable[[float], Callable[[float], bool]]] = {
    "<": lambda n: lambda a: a < n,
    "<=": lambda n: lambda a: a <= n,
    ">": lambda n: lambda a: a > n,
    ">=": lambda n: lambda a: a >= n,
}


def _as_number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        return _number(value)
    return None


def _text(value: Any) -> str:
    return value if isinstance(value, str) else msgspec.json.encode(value).decode()


# ----------------------------------------------------------------------------- JSON


_TOKEN = re.compile(
    r"""\s*(?:
      (?P<op>&&|\|\||!=|<=|>=|=|<|>|\(|\))
    | (?P<sel>\$(?:\.[A-Za-z0-9_@\-]+|\[\d+\]|\.\*|\[\*\])*)
    | (?P<str>"(?:[^"\\]|\\.)*")
    | (?P<re>%[^%]*%)
    | (?P<word>[^\s()"=!<>&|%]+)
    )""",
    re.VERBOSE,
)
_STEP = re.compile(r"\.([A-Za-z0-9_@\-]+|\*)|\[(\d+|\*)\]")


class _JsonParser:
    def __init__(self, text: str) -> None:
        if not text.endswith("}"):
            raise InvalidFilterPattern(text)
        self.tokens = self._lex(text[1:-1])
        self.pos = 0

    @staticmethod
    def _lex(body: str) -> list[tuple[str, str]]:
        tokens: list[tuple[str, str]] = []
        i = 0
        while i < len(body):
            if body[i:].strip() == "":
                break
            found = _TOKEN.match(body, i)
            if found is None or found.end() == i:
                raise InvalidFilterPattern(body)
            kind = found.lastgroup
            assert kind is not None
            tokens.append((kind, found.group(kind)))
            i = found.end()
        return tokens

    def parse(self) -> Matcher:
        if not self.tokens:
            raise InvalidFilterPattern("empty JSON pattern")
        test = self._or()
        if self.pos != len(self.tokens):
            raise InvalidFilterPattern(self.tokens[self.pos][1])

        def match(message: str) -> bool:
            if "{" not in message:
                return False
            try:
                document = msgspec.json.decode(message)
            except msgspec.DecodeError:
                return False
            return isinstance(document, dict) and test(document)

        return match

    def _peek(self) -> tuple[str, str] | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def _take(self) -> tuple[str, str]:
        token = self._peek()
        if token is None:
            raise InvalidFilterPattern("unexpected end of pattern")
        self.pos += 1
        return token

    def _or(self) -> Callable[[Any], bool]:
        parts = [self._and()]
        while self._peek() == ("op", "||"):
            self.pos += 1
            parts.append(self._and())
        return parts[0] if len(parts) == 1 else (lambda d: any(p(d) for p in parts))

    def _and(self) -> Callable[[Any], bool]:
        parts = [self._unary()]
        while self._peek() == ("op", "&&"):
            self.pos += 1
            parts.append(self._unary())
        return parts[0] if len(parts) == 1 else (lambda d: all(p(d) for p in parts))

    def _unary(self) -> Callable[[Any], bool]:
        if self._peek() == ("op", "("):
            self.pos += 1
            inner = self._or()
            if self._take() != ("op", ")"):
                raise InvalidFilterPattern("unbalanced parentheses")
            return inner
        kind, selector = self._take()
        if kind != "sel":
            raise InvalidFilterPattern(selector)
        extract = _selector(selector)
        kind, op = self._take()
        if kind == "word" and op in ("IS", "NOT"):
            return self._keyword(op, extract)
        if kind != "op" or op in ("&&", "||", "(", ")"):
            raise InvalidFilterPattern(op)
        kind, raw = self._take()
        if kind == "str":
            value, quoted, regex = msgspec.json.decode(raw.encode()), True, False
        elif kind == "re":
            value, quoted, regex = raw[1:-1], False, True
        elif kind == "word":
            value, quoted, regex = raw, False, False
        else:
            raise InvalidFilterPattern(raw)
        test = _compare(op, value, quoted, regex)
        return lambda d: test(extract(d))

    def _keyword(self, word: str, extract: Callable[[Any], Any]) -> Callable[[Any], bool]:
        kind, what = self._take()
        if kind != "word":
            raise InvalidFilterPattern(what)
        if word == "NOT":
            if what != "EXISTS":
                raise InvalidFilterPattern(what)
            return lambda d: extract(d) is _MISSING
        expected = {"NULL": None, "TRUE": True, "FALSE": False}
        if what not in expected:
            raise InvalidFilterPattern(what)
        want = expected[what]
        return lambda d: (v := extract(d)) is not _MISSING and v is want


def _selector(text: str) -> Callable[[Any], Any]:
    steps: list[str | int] = []
    for found in _STEP.finditer(text, 1):
        key, index = found.group(1), found.group(2)
        if key == "*" or index == "*":
            raise InvalidFilterPattern(text)  # wildcard selectors: not supported
        steps.append(key if key is not None else int(index))

    def extract(document: Any) -> Any:
        value = document
        for step in steps:
            if isinstance(step, int):
                if not isinstance(value, list) or step >= len(value):
                    return _MISSING
            elif not isinstance(value, dict) or step not in value:
                return _MISSING
            value = value[step]
        return value

    return extract


# ----------------------------------------------------------------------------- delimited


def _fields_of(message: str) -> list[str]:
    """A message's space-delimited fields (``"..."`` and ``[...]`` each one field)."""
    fields: list[str] = []
    i, n = 0, len(message)
    while i < n:
        if message[i] == " ":
            i += 1
            continue
        close = {'"': '"', "[": "]"}.get(message[i])
        if close is not None:
            end = message.find(close, i + 1)
            if end >= 0:
                fields.append(message[i + 1 : end])
                i = end + 1
                continue
        end = message.find(" ", i)
        end = n if end < 0 else end
        fields.append(message[i:end])
        i = end
    return fields


_CONDITION = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(!=|<=|>=|=|<|>)\s*(.+?)\s*$")


def _delimited(text: str) -> Matcher:
    if not text.endswith("]"):
        raise InvalidFilterPattern(text)
    slots: list[Callable[[str], bool] | None] = []  # None: "..."
    names: set[str] = set()
    for raw in text[1:-1].split(","):
        item = raw.strip()
        if not item:
            raise InvalidFilterPattern(text)
        if item == "...":
            slots.append(None)
            continue
        slots.append(_field_condition(item, names))
    if not slots:
        raise InvalidFilterPattern(text)

    def match(message: str) -> bool:
        return _fit(slots, _fields_of(message))

    return match


def _field_condition(item: str, names: set[str]) -> Callable[[str], bool]:
    alternatives: list[list[Callable[[str], bool]]] = []
    for alternative in item.split("||"):
        tests: list[Callable[[str], bool]] = []
        for part in alternative.split("&&"):
            part = part.strip()
            if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", part):
                names.add(part)
                tests.append(_everything)
                continue
            found = _CONDITION.match(part)
            if found is None:
                raise InvalidFilterPattern(item)
            _name, op, raw = found.groups()
            quoted = len(raw) >= 2 and raw[0] == raw[-1] == '"'
            regex = len(raw) >= 2 and raw[0] == raw[-1] == "%"
            value = raw[1:-1] if quoted or regex else raw
            if not quoted and not regex and any(c in value for c in ' "'):
                raise InvalidFilterPattern(item)
            test = _compare(op, value, quoted, regex)
            tests.append(test)
        alternatives.append(tests)
    return lambda v: any(all(t(v) for t in tests) for tests in alternatives)


def _fit(slots: list[Callable[[str], bool] | None], fields: list[str]) -> bool:
    if None not in slots:
        return len(slots) == len(fields) and all(
            t(f) for t, f in zip(slots, fields, strict=True) if t is not None
        )
    return _fit_from(slots, 0, fields, 0)


def _fit_from(slots: list[Callable[[str], bool] | None], i: int, fields: list[str], j: int) -> bool:
    if i == len(slots):
        return j == len(fields)
    slot = slots[i]
    if slot is None:
        return any(_fit_from(slots, i + 1, fields, k) for k in range(j, len(fields) + 1))
    return j < len(fields) and slot(fields[j]) and _fit_from(slots, i + 1, fields, j + 1)
