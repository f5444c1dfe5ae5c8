"""The CloudWatch Logs filter pattern engine (``lambdad.observe.log_filters``): a table of
patterns and messages, and of malformed patterns."""

from __future__ import annotations

import json

import pytest

from lambdad.observe.log_filters import InvalidFilterPattern, compile_pattern

TEXT = "2026-12-05T03:00:00Z abc-123 ERROR Failed to connect: disk full (code 28)"
DOC = json.dumps(
    {
        "level": "ERROR",
        "message": "Failed to connect",
        "latency": 612.5,
        "status": 503,
        "user": {"id": "root-7", "admin": True},
        "tags": ["a", "b"],
        "items": [{"id": 1}, {"id": 2}],
        "none": None,
        "off": False,
        "code": "503",
    }
)
ACCESS = '127.0.0.1 - frank [10/Oct/2000:13:25:15 -0700] "GET /apache_pb.gif HTTP/1.0" 404 2326'

#: (pattern, message, whether it matches). CloudWatch Logs' documented examples where they
#: exist (docs: "Filter pattern syntax for metric filters, subscription filters, filter log
#: events, and Live Tail").
CASES = [
    ("", TEXT, True),
    ("   ", TEXT, True),
    ("ERROR", TEXT, True),
    ("error", TEXT, False),  # case-sensitive
    ("ERROR disk", TEXT, True),  # all terms, any order
    ("disk ERROR", TEXT, True),
    ("ERROR WARN", TEXT, False),
    ('"disk full"', TEXT, True),
    ('"full disk"', TEXT, False),
    ('"Failed to connect:"', TEXT, True),
    ("?WARN ?ERROR", TEXT, True),
    ("?WARN ?INFO", TEXT, False),
    ('?WARN ?"disk full"', TEXT, True),
    ("ERROR -disk", TEXT, False),
    ("ERROR -WARN", TEXT, True),
    ('ERROR -"disk full"', TEXT, False),
    ("%ERR(OR|ORS)%", TEXT, True),
    ("%code [0-9]+%", TEXT, True),
    ("%^WARN%", TEXT, False),
    ('{ $.level = "ERROR" }', DOC, True),
    ("{ $.level = ERROR }", DOC, True),
    ('{ $.level = "error" }', DOC, False),
    ('{ $.level != "INFO" }', DOC, True),
    ('{ $.level != "ERROR" }', DOC, False),
    ('{ $.missing != "x" }', DOC, False),  # a comparison needs the field
    ('{ $.message = "Failed*" }', DOC, True),
    ('{ $.message = "*connect" }', DOC, True),
    ('{ $.message = "*nope*" }', DOC, False),
    ('{ $.user.id = "root*" }', DOC, True),
    ("{ $.latency > 500 }", DOC, True),
    ("{ $.latency >= 612.5 }", DOC, True),
    ("{ $.latency < 612.5 }", DOC, False),
    ("{ $.latency <= 612.5 }", DOC, True),
    ("{ $.status = 503 }", DOC, True),
    ("{ $.status != 503 }", DOC, False),
    ("{ $.status = 5* }", DOC, False),  # a wildcard is a string match: 503 is a number
    ('{ $.code = "5*" }', DOC, True),
    ("{ $.code = 503 }", DOC, True),  # numeric comparison reads a numeric string
    ("{ $.level > 5 }", DOC, False),
    ('{ $.tags[0] = "a" }', DOC, True),
    ('{ $.tags[1] = "a" }', DOC, False),
    ('{ $.tags[5] = "a" }', DOC, False),
    ("{ $.items[1].id = 2 }", DOC, True),
    ('{ $.level = "ERROR" && $.latency > 500 }', DOC, True),
    ('{ $.level = "ERROR" && $.latency > 1000 }', DOC, False),
    ('{ $.level = "INFO" || $.latency > 500 }', DOC, True),
    ('{ ($.level = "INFO" || $.level = "ERROR") && $.status = 503 }', DOC, True),
    ('{ ($.level = "INFO" || $.level = "WARN") && $.status = 503 }', DOC, False),
    ('{ $.level = "INFO" || ($.status = 503 && $.user.admin IS TRUE) }', DOC, True),
    ("{ $.none IS NULL }", DOC, True),
    ("{ $.level IS NULL }", DOC, False),
    ("{ $.missing IS NULL }", DOC, False),
    ("{ $.missing NOT EXISTS }", DOC, True),
    ("{ $.level NOT EXISTS }", DOC, False),
    ("{ $.user.admin IS TRUE }", DOC, True),
    ("{ $.off IS FALSE }", DOC, True),
    ("{ $.off IS TRUE }", DOC, False),
    ("{ $.message = %connect$% }", DOC, True),
    ('{ $.level = "ERROR" }', TEXT, False),  # not JSON
    ('{ $.level = "ERROR" }', "[1, 2]", False),
    ("[ip, id, user, timestamp, request, status_code, bytes]", ACCESS, True),
    ("[ip, id, user, timestamp, request, status_code = 404, bytes]", ACCESS, True),
    ("[ip, id, user, timestamp, request, status_code = 4*, bytes]", ACCESS, True),
    ("[ip, id, user, timestamp, request, status_code = 5*, bytes]", ACCESS, False),
    ("[ip, id, user, timestamp, request, status_code, bytes > 1000]", ACCESS, True),
    ("[ip, id, user, timestamp, request, status_code, bytes < 1000]", ACCESS, False),
    ("[ip, ..., status_code = 404, bytes]", ACCESS, True),
    ("[..., status_code = 404 || status_code = 410, bytes]", ACCESS, True),
    ("[ip = 127.0.0.1, ...]", ACCESS, True),
    ('[ip, id, user = "frank", ...]', ACCESS, True),
    ("[ip, id, user, timestamp, request = *gif*, ...]", ACCESS, True),
    ("[a, b]", ACCESS, False),  # a field count that does not fit
]

MALFORMED = [
    '"unclosed',
    'ERROR "unclosed',
    "?",
    "-",
    "ERROR ?",
    '""',
    "%%",
    "%(unbalanced%",
    "{ $.a = }",
    "{ $.a = 1",
    "$.a = 1 }",
    "{ }",
    "{ a = 1 }",
    "{ $.a }",
    "{ $.a == 1 }",
    "{ $.a > abc }",
    '{ $.a > "5" }',
    "{ $.a = 1 && }",
    "{ ($.a = 1 }",
    "{ $.a = 1) }",
    "{ $.a IS MAYBE }",
    "{ $.a NOT THERE }",
    "{ $.a[*] = 1 }",
    "{ $.a = %(x% }",
    "[a,,b]",
    "[a, b",
    "[]",
    "[a = ]",
    "[a = x y]",
    "ERROR {",
]


@pytest.mark.parametrize(("pattern", "message", "expected"), CASES)
def test_pattern_table(pattern: str, message: str, expected: bool) -> None:
    """Each pattern matches a message as CloudWatch Logs' filter syntax says it does."""
    assert compile_pattern(pattern)(message) is expected


@pytest.mark.parametrize("pattern", MALFORMED)
def test_malformed_patterns_are_refused(pattern: str) -> None:
    """A malformed pattern raises InvalidFilterPattern (the API answers AWS's
    InvalidParameterException "Invalid filter pattern")."""
    with pytest.raises(InvalidFilterPattern):
        compile_pattern(pattern)


def test_no_pattern_matches_everything() -> None:
    """No pattern (``None``) matches every message, as an absent filterPattern does."""
    assert compile_pattern(None)("anything")
