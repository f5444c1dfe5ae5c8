"""Lambda's event filtering language (``FilterCriteria``), compiled once and matched fast.

A mapping's ``FilterCriteria.Filters[].Pattern`` strings are EventBridge-style event patterns.
:func:`compile_criteria` validates them as Lambda does (every refusal is
``InvalidParameterValueException("Invalid filter pattern definition.")``, except too many
filters) and turns each into a tree of small matchers; :meth:`RecordFilter.matches` says whether
a record passes: it does when ANY pattern matches. Patterns match a *view* of a record, where
the payload a pattern may look inside is already decoded: :func:`for_sqs` (``body`` parsed when
it is a JSON object), :func:`for_kinesis` (``kinesis`` fields lifted to the top, ``data``
base64-decoded and parsed when it is a JSON object), :func:`for_dynamodb` (the record itself).

Rules, as Lambda's and EventBridge's documentation state them (docs/event-filtering.md):

- a pattern is a JSON object; a key maps to a nested pattern (an object) or to a non-empty
  array of alternatives (OR); keys of one object must all match (AND); ``"$or"`` takes an array
  of at least two patterns, one of which must match;
- an alternative is a value (string, number, ``true``/``false``, ``null``), matched exactly, or
  an object with one operator: ``prefix``, ``suffix`` (a string, or
  ``{"equals-ignore-case": string}``), ``equals-ignore-case``, ``anything-but`` (a value, an
  array of values, or ``{"prefix"|"suffix"|"equals-ignore-case": ...}``), ``numeric``
  (``["=", n]`` or one or two bounds ``[">", a, "<=", b]``), ``exists`` (``true``/``false``);
- operators test leaf values only: an object in the record never matches an array of
  alternatives, and a string never matches a nested pattern (that is how a JSON body meets a
  plain-string pattern, and a plain body a JSON pattern: the record is filtered out);
- an array in the record matches when any of its elements does.

Matching never raises, whatever JSON the record holds.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from lambdad.errors import InvalidParameterValueException

#: The number of filters an event source mapping may have unless a quota says otherwise.
DEFAULT_MAX_FILTERS = 5
#: A ``Pattern`` is at most this many characters (botocore's ``Filter.Pattern`` max length).
MAX_PATTERN_LENGTH = 4096
#: How deep objects may nest in a pattern (AWS publishes no figure; see the docs page).
MAX_PATTERN_DEPTH = 32
#: ``numeric`` operands lie in this range (EventBridge's documented bound).
NUMERIC_LIMIT = 5.0e9

INVALID_PATTERN = "Invalid filter pattern definition."

Source = Literal["sqs", "kinesis", "dynamodb"]
#: The key whose payload a pattern may look inside, per source.
DATA_KEYS: dict[str, str] = {"sqs": "body", "kinesis": "data", "dynamodb": "dynamodb"}

_MISSING: Any = object()

Test = Callable[[Any], bool]
"""A compiled alternative: does this one leaf value (never a list) match."""


class _Invalid(Exception):
    """A pattern Lambda refuses; becomes ``InvalidParameterValueException`` at the edge."""


# -- compiled patterns ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Leaf:
    """An array of alternatives for one key: OR of value tests, plus ``exists``."""

    exact: frozenset[tuple[str, Any]]
    tests: tuple[Test, ...]
    if_absent: bool
    if_present: bool

    def matches(self, obj: Mapping[str, Any], key: str) -> bool:
        value = obj.get(key, _MISSING)
        if value is _MISSING:
            return self.if_absent
        if isinstance(value, list):
            return any(self._one(leaf) for leaf in _leaves(value))
        return self._one(value)

    def _one(self, value: Any) -> bool:
        if isinstance(value, dict):
            return False
        if self.if_present:
            return True
        if _exact_key(value) in self.exact:
            return True
        return any(test(value) for test in self.tests)


@dataclass(frozen=True, slots=True)
class _Object:
    """A nested pattern: every field (AND) and every ``$or`` group must match.

    ``if_absent``: the pattern holds where its object is missing altogether (every field is
    ``exists: false``), as EventBridge matches ``exists: false`` against a path's absence.
    """

    fields: tuple[tuple[str, _Leaf | _Object], ...]
    alternatives: tuple[tuple[_Object, ...], ...]
    if_absent: bool

    def matches(self, value: Any) -> bool:
        if value is _MISSING:
            return self.if_absent
        if isinstance(value, dict):
            return self._matches_object(value)
        if isinstance(value, list):
            return any(self._matches_object(item) for item in _leaves(value))
        return False

    def _matches_object(self, obj: Any) -> bool:
        if not isinstance(obj, dict):
            return False
        for key, rule in self.fields:
            if isinstance(rule, _Leaf):
                if not rule.matches(obj, key):
                    return False
            elif not rule.matches(obj.get(key, _MISSING)):
                return False
        return all(any(alt._matches_object(obj) for alt in group) for group in self.alternatives)


def _leaves(value: Any) -> Iterator[Any]:
    """A record's value, arrays (of arrays) flattened without recursion."""
    if not isinstance(value, list):
        yield value
        return
    stack: list[Iterator[Any]] = [iter(value)]
    while stack:
        for item in stack[-1]:
            if isinstance(item, list):
                stack.append(iter(item))
                break
            yield item
        else:
            stack.pop()


def _exact_key(value: Any) -> tuple[str, Any]:
    """What exact matching compares: the JSON type and the value (1 is not true, 300 not 300.0)."""
    if isinstance(value, bool):
        return ("b", value)
    if isinstance(value, int):
        return ("i", value)
    if isinstance(value, float):
        return ("f", value)
    if isinstance(value, str):
        return ("s", value)
    if value is None:
        return ("n", None)
    return ("?", id(value))


# -- the public face -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RecordFilter:
    """Compiled ``FilterCriteria``: a record passes when any pattern matches (or there are none)."""

    patterns: tuple[_Object, ...]

    def matches(self, record: Any) -> bool:
        """Whether ``record`` (a view from ``for_sqs``/``for_kinesis``/``for_dynamodb``) passes."""
        if not self.patterns:
            return True
        return any(pattern.matches(record) for pattern in self.patterns)


def compile_criteria(
    filters: Iterable[str | None],
    *,
    source: Source | None = None,
    max_filters: int = DEFAULT_MAX_FILTERS,
) -> RecordFilter:
    """Validate and compile ``FilterCriteria.Filters[].Pattern`` strings.

    ``source`` adds the stream rule: for ``kinesis`` and ``dynamodb`` the data key (``data``,
    ``dynamodb``) takes only a nested pattern. Raises ``InvalidParameterValueException``.
    """
    patterns = list(filters)
    if len(patterns) > max_filters:
        raise InvalidParameterValueException(
            f"The number of filters in FilterCriteria exceeds the limit of {max_filters}."
        )
    data_key = DATA_KEYS[source] if source in ("kinesis", "dynamodb") else None
    return RecordFilter(tuple(_compile_text(text, data_key) for text in patterns))


def _compile_text(text: str | None, stream_data_key: str | None) -> _Object:
    if not isinstance(text, str) or not text or len(text) > MAX_PATTERN_LENGTH:
        raise InvalidParameterValueException(INVALID_PATTERN)
    try:
        document = json.loads(text, parse_constant=_refuse_constant)
        pattern = _object(document, depth=1)
        if stream_data_key is not None:
            _require_nested(pattern, stream_data_key)
    except (_Invalid, ValueError, RecursionError) as exc:
        raise InvalidParameterValueException(INVALID_PATTERN) from exc
    return pattern


def _refuse_constant(name: str) -> Any:
    raise _Invalid(f"{name} is not JSON")


def _require_nested(pattern: _Object, key: str) -> None:
    for name, rule in pattern.fields:
        if name == key and not isinstance(rule, _Object):
            raise _Invalid(f"{key} takes a nested pattern on a stream")
    for group in pattern.alternatives:
        for alternative in group:
            _require_nested(alternative, key)


# -- compiling -----------------------------------------------------------------------------------


def _object(document: Any, depth: int) -> _Object:
    if not isinstance(document, dict) or not document or depth > MAX_PATTERN_DEPTH:
        raise _Invalid("a pattern is a non-empty object")
    fields: list[tuple[str, _Leaf | _Object]] = []
    groups: list[tuple[_Object, ...]] = []
    for key, value in document.items():
        if key == "$or":
            groups.append(_or_group(value, depth))
        elif isinstance(value, dict):
            fields.append((key, _object(value, depth + 1)))
        elif isinstance(value, list):
            fields.append((key, _leaf(value)))
        else:
            raise _Invalid(f"{key}: a value is an array or an object")
    absent = all(rule.if_absent for _, rule in fields) and all(
        any(alternative.if_absent for alternative in group) for group in groups
    )
    return _Object(tuple(fields), tuple(groups), absent)


def _or_group(value: Any, depth: int) -> tuple[_Object, ...]:
    if not isinstance(value, list) or len(value) < 2:
        raise _Invalid("$or takes an array of at least two patterns")
    return tuple(_object(item, depth + 1) for item in value)


def _leaf(alternatives: list[Any]) -> _Leaf:
    if not alternatives:
        raise _Invalid("an array of alternatives is never empty")
    exact: set[tuple[str, Any]] = set()
    tests: list[Test] = []
    if_absent = if_present = False
    for item in alternatives:
        if isinstance(item, dict):
            operator, operand = _single(item)
            if operator == "exists":
                if not isinstance(operand, bool):
                    raise _Invalid("exists takes true or false")
                if_present |= operand
                if_absent |= not operand
            else:
                tests.append(_operator(operator, operand))
        elif _is_value(item):
            exact.add(_exact_key(item))
        else:
            raise _Invalid("an alternative is a value or an operator object")
    return _Leaf(frozenset(exact), tuple(tests), if_absent, if_present)


def _single(item: dict[str, Any]) -> tuple[str, Any]:
    if len(item) != 1:
        raise _Invalid("an operator object has exactly one operator")
    return next(iter(item.items()))


def _is_value(item: Any) -> bool:
    return item is None or isinstance(item, str | bool | int | float)


def _is_number(item: Any) -> bool:
    return isinstance(item, int | float) and not isinstance(item, bool)


def _string(operand: Any) -> str:
    if not isinstance(operand, str):
        raise _Invalid("the operator takes a string")
    return operand


def _operator(operator: str, operand: Any) -> Test:
    compile_one = _OPERATORS.get(operator)
    if compile_one is None:
        raise _Invalid(f"unknown operator {operator}")
    return compile_one(operand)


def _prefix(operand: Any) -> Test:
    if isinstance(operand, dict):
        folded = _ignore_case_operand(operand).casefold()
        return lambda v: isinstance(v, str) and v.casefold().startswith(folded)
    text = _string(operand)
    return lambda v: isinstance(v, str) and v.startswith(text)


def _suffix(operand: Any) -> Test:
    if isinstance(operand, dict):
        folded = _ignore_case_operand(operand).casefold()
        return lambda v: isinstance(v, str) and v.casefold().endswith(folded)
    text = _string(operand)
    return lambda v: isinstance(v, str) and v.endswith(text)


def _ignore_case_operand(operand: dict[str, Any]) -> str:
    operator, value = _single(operand)
    if operator != "equals-ignore-case":
        raise _Invalid("prefix and suffix take a string or {equals-ignore-case: string}")
    return _string(value)


def _equals_ignore_case(operand: Any) -> Test:
    folded = _string(operand).casefold()
    return lambda v: isinstance(v, str) and v.casefold() == folded


def _anything_but(operand: Any) -> Test:
    if isinstance(operand, dict):
        return _anything_but_operator(operand)
    values = operand if isinstance(operand, list) else [operand]
    if not values or not all(isinstance(v, str) or _is_number(v) for v in values):
        raise _Invalid("anything-but takes strings or numbers")
    excluded = frozenset(_exact_key(v) for v in values)
    return lambda v: _exact_key(v) not in excluded


def _anything_but_operator(operand: dict[str, Any]) -> Test:
    operator, value = _single(operand)
    if operator == "equals-ignore-case":
        texts = value if isinstance(value, list) else [value]
        if not texts:
            raise _Invalid("anything-but equals-ignore-case takes strings")
        folded = frozenset(_string(t).casefold() for t in texts)
        return lambda v: isinstance(v, str) and v.casefold() not in folded
    if operator not in ("prefix", "suffix"):
        raise _Invalid("anything-but takes prefix, suffix or equals-ignore-case")
    inner = _prefix(value) if operator == "prefix" else _suffix(value)
    return lambda v: isinstance(v, str) and not inner(v)


_LOWER = {">": False, ">=": True}
_UPPER = {"<": False, "<=": True}


def _numeric(operand: Any) -> Test:
    if not isinstance(operand, list) or len(operand) not in (2, 4):
        raise _Invalid("numeric takes one or two comparisons")
    pairs = [(operand[i], operand[i + 1]) for i in range(0, len(operand), 2)]
    for op, number in pairs:
        if not isinstance(op, str) or not _is_number(number) or not _in_range(number):
            raise _Invalid("numeric compares with numbers in range")
    if len(pairs) == 1:
        return _one_comparison(*pairs[0])
    (low_op, low), (high_op, high) = pairs
    if low_op not in _LOWER or high_op not in _UPPER or not low < high:
        raise _Invalid("a numeric range is a lower bound then a greater upper bound")
    return _between(low, _LOWER[low_op], high, _UPPER[high_op])


def _in_range(number: float) -> bool:
    return math.isfinite(number) and -NUMERIC_LIMIT <= number <= NUMERIC_LIMIT


def _one_comparison(op: str, bound: float) -> Test:
    if op == "=":
        return lambda v: _is_number(v) and v == bound
    if op in _LOWER:
        return _between(bound, _LOWER[op], math.inf, False)
    if op in _UPPER:
        return _between(-math.inf, False, bound, _UPPER[op])
    raise _Invalid(f"unknown numeric operator {op}")


def _between(low: float, low_in: bool, high: float, high_in: bool) -> Test:
    def test(v: Any) -> bool:
        if not _is_number(v):
            return False
        above = v >= low if low_in else v > low
        below = v <= high if high_in else v < high
        return bool(above and below)

    return test


_OPERATORS: dict[str, Callable[[Any], Test]] = {
    "prefix": _prefix,
    "suffix": _suffix,
    "equals-ignore-case": _equals_ignore_case,
    "anything-but": _anything_but,
    "numeric": _numeric,
}


# -- record views --------------------------------------------------------------------------------


def for_sqs(record: Mapping[str, Any]) -> dict[str, Any]:
    """An SQS record as patterns see it: ``body`` parsed when it is a JSON object."""
    view = dict(record)
    body = view.get("body")
    if isinstance(body, str):
        parsed = _json_object(body)
        if parsed is not None:
            view["body"] = parsed
    return view


def for_kinesis(record: Mapping[str, Any]) -> dict[str, Any]:
    """A Kinesis record as patterns see it.

    The ``kinesis`` fields (``partitionKey``, ``data``, ...) sit at the top beside
    ``eventSource`` and the rest, and ``data`` is base64-decoded and parsed when it holds a
    UTF-8 JSON object; otherwise it stays the base64 text (a nested pattern never matches it).
    """
    view = {key: value for key, value in record.items() if key != "kinesis"}
    inner = record.get("kinesis")
    if isinstance(inner, Mapping):
        view.update(inner)
    data = view.get("data")
    if isinstance(data, str):
        parsed = _json_object(_base64_text(data))
        if parsed is not None:
            view["data"] = parsed
    return view


def for_dynamodb(record: Mapping[str, Any]) -> dict[str, Any]:
    """A DynamoDB Streams record as patterns see it: as it is (``dynamodb`` is already JSON)."""
    return dict(record)


View = Callable[[Mapping[str, Any]], dict[str, Any]]


def view_for(source: Source) -> View:
    """The view function of a source: ``for_sqs``, ``for_kinesis`` or ``for_dynamodb``."""
    return _VIEWS[source]


_VIEWS: dict[str, View] = {"sqs": for_sqs, "kinesis": for_kinesis, "dynamodb": for_dynamodb}


def _base64_text(data: str) -> str:
    try:
        return base64.b64decode(data, validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return ""


def _json_object(text: str) -> dict[str, Any] | None:
    """``text`` parsed when it is a JSON object, else None (plain text, arrays, scalars)."""
    if not text.lstrip().startswith("{"):
        return None
    try:
        parsed = json.loads(text)
    except (ValueError, RecursionError):
        return None
    return parsed if isinstance(parsed, dict) else None
