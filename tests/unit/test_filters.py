"""Unit tests of Lambda's event filtering language (lambdad.events.filters).

The cases come from AWS's documentation: Lambda's "Control which events Lambda sends to your
function" (invocation-eventfiltering), its SQS / Kinesis / DynamoDB filtering pages, and
EventBridge's "Comparison operators for use in event patterns" (Lambda "supports the same set
of syntax and rules as Amazon EventBridge"). Docstrings quote the rule each test pins.
"""

from __future__ import annotations

import base64
import json
import random
import time
from typing import Any

import pytest

from lambdad.errors import InvalidParameterValueException
from lambdad.events.filters import (
    INVALID_PATTERN,
    RecordFilter,
    compile_criteria,
    for_dynamodb,
    for_kinesis,
    for_sqs,
    view_for,
)


def pattern(document: Any, **kwargs: Any) -> RecordFilter:
    return compile_criteria([json.dumps(document)], **kwargs)


def passes(document: Any, record: Any) -> bool:
    return pattern(document).matches(record)


def refused(text: str, **kwargs: Any) -> str:
    with pytest.raises(InvalidParameterValueException) as caught:
        compile_criteria([text], **kwargs)
    return caught.value.message


def sqs(body: str, **fields: Any) -> dict[str, Any]:
    record = {
        "messageId": "059f36b4-87a3-44ab-83d2-661975830a7d",
        "body": body,
        "attributes": {"ApproximateReceiveCount": "1"},
        "messageAttributes": {},
        "eventSource": "aws:sqs",
        "awsRegion": "us-west-2",
    }
    return for_sqs({**record, **fields})


def kinesis(data: bytes, partition_key: str = "1") -> dict[str, Any]:
    return for_kinesis(
        {
            "kinesis": {
                "kinesisSchemaVersion": "1.0",
                "partitionKey": partition_key,
                "sequenceNumber": "49590338271490256608559692538361571095921575989136588898",
                "data": base64.b64encode(data).decode(),
                "approximateArrivalTimestamp": 1545084650.987,
            },
            "eventSource": "aws:kinesis",
            "eventName": "aws:kinesis:record",
        }
    )


# -- the comparison operators, from the documentation's table ------------------------------------

OPERATOR_CASES = [
    # (rule, pattern, record, passes)
    ("Null: UserID is null", {"UserID": [None]}, {"UserID": None}, True),
    ("Null: UserID is null", {"UserID": [None]}, {"UserID": "x"}, False),
    ("Null is not absent", {"UserID": [None]}, {}, False),
    ("Empty: LastName is empty", {"LastName": [""]}, {"LastName": ""}, True),
    ("Empty: LastName is empty", {"LastName": [""]}, {"LastName": "Doe"}, False),
    ("Equals: Name is Alice", {"Name": ["Alice"]}, {"Name": "Alice"}, True),
    ("Equals is case-sensitive", {"Name": ["Alice"]}, {"Name": "alice"}, False),
    ("Equals (ignore case)", {"Name": [{"equals-ignore-case": "alice"}]}, {"Name": "ALICE"}, True),
    ("Equals (ignore case)", {"Name": [{"equals-ignore-case": "alice"}]}, {"Name": "Bob"}, False),
    (
        "And: Location is New York and Day is Monday",
        {"Location": ["New York"], "Day": ["Monday"]},
        {"Location": "New York", "Day": "Monday"},
        True,
    ),
    (
        "And: Location is New York and Day is Monday",
        {"Location": ["New York"], "Day": ["Monday"]},
        {"Location": "New York", "Day": "Friday"},
        False,
    ),
    ("Or: Credit or Debit", {"PaymentType": ["Credit", "Debit"]}, {"PaymentType": "Debit"}, True),
    ("Or: Credit or Debit", {"PaymentType": ["Credit", "Debit"]}, {"PaymentType": "Cash"}, False),
    (
        "Or (multiple fields): Location is New York, or Day is Monday",
        {"$or": [{"Location": ["New York"]}, {"Day": ["Monday"]}]},
        {"Location": "Boston", "Day": "Monday"},
        True,
    ),
    (
        "Or (multiple fields): Location is New York, or Day is Monday",
        {"$or": [{"Location": ["New York"]}, {"Day": ["Monday"]}]},
        {"Location": "Boston", "Day": "Friday"},
        False,
    ),
    (
        "Not: anything but Raining",
        {"Weather": [{"anything-but": ["Raining"]}]},
        {"Weather": "Sunny"},
        True,
    ),
    (
        "Not: anything but Raining",
        {"Weather": [{"anything-but": ["Raining"]}]},
        {"Weather": "Raining"},
        False,
    ),
    (
        "Anything-but one value",
        {"state": [{"anything-but": "initializing"}]},
        {"state": "running"},
        True,
    ),
    (
        "Anything-but one value",
        {"state": [{"anything-but": "initializing"}]},
        {"state": "initializing"},
        False,
    ),
    ("Anything-but numbers", {"x": [{"anything-but": [1, 2]}]}, {"x": 3}, True),
    ("Anything-but numbers", {"x": [{"anything-but": [1, 2]}]}, {"x": 2}, False),
    ("Anything-but needs the field", {"Weather": [{"anything-but": ["Raining"]}]}, {}, False),
    (
        "Anything-but (begins with)",
        {"Region": [{"anything-but": {"prefix": "us-"}}]},
        {"Region": "eu-west-1"},
        True,
    ),
    (
        "Anything-but (begins with)",
        {"Region": [{"anything-but": {"prefix": "us-"}}]},
        {"Region": "us-east-1"},
        False,
    ),
    (
        "Anything-but (ends with)",
        {"FileName": [{"anything-but": {"suffix": ".png"}}]},
        {"FileName": "a.jpg"},
        True,
    ),
    (
        "Anything-but (ends with)",
        {"FileName": [{"anything-but": {"suffix": ".png"}}]},
        {"FileName": "a.png"},
        False,
    ),
    (
        "Anything-but (ignore case)",
        {"state": [{"anything-but": {"equals-ignore-case": "initializing"}}]},
        {"state": "INITIALIZING"},
        False,
    ),
    ("Numeric (equals): Price is 100", {"Price": [{"numeric": ["=", 100]}]}, {"Price": 100}, True),
    (
        "Numeric (equals) compares values",
        {"Price": [{"numeric": ["=", 100]}]},
        {"Price": 100.0},
        True,
    ),
    ("Numeric (equals): Price is 100", {"Price": [{"numeric": ["=", 100]}]}, {"Price": 101}, False),
    ("Numeric ignores strings", {"Price": [{"numeric": ["=", 100]}]}, {"Price": "100"}, False),
    (
        "Numeric (range): >10, <=20",
        {"Price": [{"numeric": [">", 10, "<=", 20]}]},
        {"Price": 20},
        True,
    ),
    (
        "Numeric (range): >10, <=20",
        {"Price": [{"numeric": [">", 10, "<=", 20]}]},
        {"Price": 10},
        False,
    ),
    (
        "Numeric (range): >10, <=20",
        {"Price": [{"numeric": [">", 10, "<=", 20]}]},
        {"Price": 20.5},
        False,
    ),
    ("Numeric lower bound alone", {"n": [{"numeric": [">=", 0]}]}, {"n": 0}, True),
    ("Numeric upper bound alone", {"n": [{"numeric": ["<", 0]}]}, {"n": 0}, False),
    ("Exists: ProductName exists", {"ProductName": [{"exists": True}]}, {"ProductName": "x"}, True),
    ("Exists: ProductName exists", {"ProductName": [{"exists": True}]}, {}, False),
    ("Does not exist", {"ProductName": [{"exists": False}]}, {}, True),
    ("Does not exist", {"ProductName": [{"exists": False}]}, {"ProductName": "x"}, False),
    (
        "Does not exist, under a missing parent",
        {"detail": {"c-count": [{"exists": False}]}},
        {"other": 1},
        True,
    ),
    (
        "Does not exist is not met by a plain value where an object was expected",
        {"detail": {"c-count": [{"exists": False}]}},
        {"detail": "text"},
        False,
    ),
    (
        "Exists works on leaf nodes only",
        {"detail": [{"exists": True}]},
        {"detail": {"a": 1}},
        False,
    ),
    (
        "Begins with: Region is in the US",
        {"Region": [{"prefix": "us-"}]},
        {"Region": "us-east-1"},
        True,
    ),
    (
        "Begins with: Region is in the US",
        {"Region": [{"prefix": "us-"}]},
        {"Region": "eu-west-1"},
        False,
    ),
    (
        "Begins with (ignore case)",
        {"service": [{"prefix": {"equals-ignore-case": "eventb"}}]},
        {"service": "EventBridge"},
        True,
    ),
    (
        "Ends with: FileName ends with .png",
        {"FileName": [{"suffix": ".png"}]},
        {"FileName": "a.png"},
        True,
    ),
    (
        "Ends with: FileName ends with .png",
        {"FileName": [{"suffix": ".png"}]},
        {"FileName": "a.PNG"},
        False,
    ),
    (
        "Ends with (ignore case)",
        {"service": [{"suffix": {"equals-ignore-case": "tBridge"}}]},
        {"service": "EVENTBRIDGE"},
        True,
    ),
    ("Prefix ignores numbers", {"Region": [{"prefix": "1"}]}, {"Region": 12}, False),
    ("Numbers: 300 and 300.0 are not equal", {"n": [300]}, {"n": 300.0}, False),
    ("Numbers: 300 equals 300", {"n": [300]}, {"n": 300}, True),
    ("Booleans are not numbers", {"n": [1]}, {"n": True}, False),
    ("Booleans match exactly", {"ok": [True]}, {"ok": True}, True),
    ("An array matches if any element does", {"tags": ["b"]}, {"tags": ["a", "b"]}, True),
    ("An array matches if any element does", {"tags": ["c"]}, {"tags": ["a", "b"]}, False),
    ("Nested arrays are flattened", {"tags": ["c"]}, {"tags": [["a"], [["c"]]]}, True),
    ("An empty array holds no value", {"tags": [{"exists": True}]}, {"tags": []}, False),
    ("Nested objects", {"a": {"b": {"c": [1]}}}, {"a": {"b": {"c": 1}}}, True),
    (
        "Nested pattern against an array of objects",
        {"a": {"b": [1]}},
        {"a": [{"b": 2}, {"b": 1}]},
        True,
    ),
    ("Nested pattern against a string", {"a": {"b": [1]}}, {"a": "b"}, False),
    ("Leaf pattern against an object", {"a": ["x"]}, {"a": {"x": 1}}, False),
    ("Fields not in the pattern are ignored", {"a": ["x"]}, {"a": "x", "b": "y"}, True),
    (
        "The event must contain all the field names in a filter",
        {"a": ["x"], "b": ["y"]},
        {"a": "x"},
        False,
    ),
]


@pytest.mark.parametrize(
    ("rule", "document", "record", "expected"),
    OPERATOR_CASES,
    ids=[f"{i}-{case[0]}" for i, case in enumerate(OPERATOR_CASES)],
)
def test_comparison_operators(rule: str, document: Any, record: Any, expected: bool) -> None:
    """Each comparison operator of Lambda's table matches as the documentation's example says."""
    assert passes(document, record) is expected, rule


# -- FilterCriteria as a whole -------------------------------------------------------------------


def test_any_of_the_filters_lets_a_record_through() -> None:
    """ "If an event satisfies any one of these five filters, Lambda sends the event to your
    function. Otherwise, Lambda discards the event." """
    criteria = compile_criteria(['{"a": [1]}', '{"b": [2]}'])
    assert criteria.matches({"a": 1})
    assert criteria.matches({"b": 2})
    assert not criteria.matches({"a": 2, "b": 1})


def test_no_filters_let_everything_through() -> None:
    """A mapping without FilterCriteria (or with an empty list) sends every record."""
    assert compile_criteria([]).matches({"anything": 1})


def test_five_filters_are_allowed_and_a_sixth_is_refused() -> None:
    """ "By default, you can have five different filters per event source"; more is an error at
    creation (the quota can be raised to 10: ``max_filters``)."""
    five = ['{"a": [1]}'] * 5
    compile_criteria(five)
    with pytest.raises(InvalidParameterValueException):
        compile_criteria([*five, '{"a": [1]}'])
    compile_criteria([*five, '{"a": [1]}'], max_filters=10)


def test_a_filter_without_pattern_is_refused() -> None:
    """A Filter with no Pattern is refused like a malformed one ("Invalid filter pattern
    definition.")."""
    with pytest.raises(InvalidParameterValueException) as caught:
        compile_criteria([None])
    assert caught.value.message == INVALID_PATTERN


def test_console_example_a_is_1_or_2() -> None:
    """The docs' console example ``{ "a" : [ 1, 2 ] }`` processes "only the records where field a
    is equal to 1 or 2"."""
    criteria = compile_criteria(['{ "a" : [ 1, 2 ] }'])
    assert criteria.matches({"a": 2})
    assert not criteria.matches({"a": 3})


# -- sources -------------------------------------------------------------------------------------


def test_sqs_body_json_pattern_matches_json_body() -> None:
    """SQS docs: process only records whose RequestCode is "BBBB", filtering on the body key
    (Valid JSON body, valid JSON pattern: "Lambda filters based on your filter criteria")."""
    criteria = pattern({"body": {"RequestCode": ["BBBB"]}})
    body = {"RecordNumber": 1234, "TimeStamp": "yyyy-mm-ddThh:mm:ss", "RequestCode": "BBBB"}
    assert criteria.matches(sqs(json.dumps(body, indent=1)))
    assert not criteria.matches(sqs(json.dumps({**body, "RequestCode": "AAAA"})))


def test_sqs_plain_body_under_json_pattern_is_dropped() -> None:
    """SQS table: plain string body, valid JSON filter pattern for body: "Lambda drops the
    message"."""
    assert not pattern({"body": {"RequestCode": ["BBBB"]}}).matches(sqs("RequestCode BBBB"))


def test_sqs_json_body_under_plain_pattern_is_dropped() -> None:
    """SQS table: valid JSON body, plain string filter pattern for body: "Lambda drops the
    message"."""
    body = json.dumps({"RequestCode": "BBBB"})
    assert not pattern({"body": [body]}).matches(sqs(body))
    assert not pattern({"body": [{"prefix": "{"}]}).matches(sqs(body))


def test_sqs_plain_body_under_plain_pattern_is_filtered() -> None:
    """SQS table: plain string body, plain string pattern: "Lambda filters based on your filter
    criteria"."""
    assert pattern({"body": ["hello"]}).matches(sqs("hello"))
    assert pattern({"body": [{"prefix": "hel"}]}).matches(sqs("hello"))
    assert not pattern({"body": ["hello"]}).matches(sqs("bye"))


def test_sqs_metadata_only_pattern_skips_the_body_check() -> None:
    """SQS table: no filter pattern for data properties: "Lambda filters (on the other metadata
    properties only)", whatever the body holds."""
    criteria = pattern({"attributes": {"ApproximateReceiveCount": ["1"]}})
    assert criteria.matches(sqs("plain"))
    assert criteria.matches(sqs('{"a": 1}'))


def test_kinesis_data_is_decoded_and_matched_with_metadata() -> None:
    """Kinesis docs: ``{"partitionKey": ["1"], "data": {"Location": ["Los Angeles"]}}``
    matches the partition key (metadata) and the base64-decoded JSON data."""
    criteria = pattern(
        {"partitionKey": ["1"], "data": {"Location": ["Los Angeles"]}}, source="kinesis"
    )
    data = json.dumps({"Location": "Los Angeles"}).encode()
    assert criteria.matches(kinesis(data))
    assert not criteria.matches(kinesis(data, partition_key="2"))
    assert not criteria.matches(kinesis(json.dumps({"Location": "Seattle"}).encode()))


def test_kinesis_numeric_range_on_data() -> None:
    """Docs example: Temperature "greater than 50 but less than or equal to 60"."""
    criteria = pattern({"data": {"Temperature": [{"numeric": [">", 50, "<=", 60]}]}})
    assert criteria.matches(kinesis(b'{"Temperature": 60}'))
    assert not criteria.matches(kinesis(b'{"Temperature": 50}'))


def test_kinesis_non_json_data_under_json_pattern_is_dropped() -> None:
    """Streams table: non-JSON incoming data, valid JSON pattern: "Lambda drops the record"."""
    criteria = pattern({"data": {"Location": ["Los Angeles"]}}, source="kinesis")
    assert not criteria.matches(kinesis(b"Location=Los Angeles"))
    assert not criteria.matches(kinesis(b"\xff\xfe not utf-8"))


def test_kinesis_non_json_data_passes_a_metadata_only_pattern() -> None:
    """Streams table: non-JSON data, no pattern for data properties: Lambda filters on the
    metadata properties only."""
    assert pattern({"partitionKey": ["1"]}, source="kinesis").matches(kinesis(b"plain"))


@pytest.mark.parametrize(("source", "key"), [("kinesis", "data"), ("dynamodb", "dynamodb")])
def test_streams_refuse_a_non_json_pattern_on_their_data_key(source: str, key: str) -> None:
    """Streams table: a non-JSON filter pattern for data properties: "Lambda throws an exception
    at the time of the event source mapping creation or update"."""
    text = json.dumps({key: ["plain"]})
    assert refused(text, source=source) == INVALID_PATTERN
    assert refused(json.dumps({"$or": [{"a": [1]}, {key: ["x"]}]}), source=source)
    compile_criteria([text], source="sqs")


def test_dynamodb_multi_level_filtering() -> None:
    """Docs multi-level example: handle only events where the Key ID value N is 101."""
    criteria = pattern({"dynamodb": {"Keys": {"Id": {"N": ["101"]}}}}, source="dynamodb")
    record = {
        "eventName": "INSERT",
        "dynamodb": {
            "Keys": {"Id": {"N": "101"}},
            "NewImage": {"Message": {"S": "New item!"}, "Id": {"N": "101"}},
            "SequenceNumber": "111",
            "SizeBytes": 26,
            "StreamViewType": "NEW_AND_OLD_IMAGES",
        },
    }
    assert criteria.matches(for_dynamodb(record))
    record["dynamodb"]["Keys"] = {"Id": {"N": "102"}}
    assert not criteria.matches(for_dynamodb(record))


def test_view_for_names_each_sources_view() -> None:
    """Each source name maps to its view function, for the pollers to pick by source."""
    assert (view_for("sqs"), view_for("kinesis"), view_for("dynamodb")) == (
        for_sqs,
        for_kinesis,
        for_dynamodb,
    )


def test_dynamodb_numbers_are_strings_so_numeric_never_matches_them() -> None:
    """DynamoDB's "N" values are JSON strings ({"N": "101"}): ``numeric`` compares JSON numbers
    only, so it never matches them, and exact matching must name the string ("101")."""
    record = for_dynamodb({"dynamodb": {"NewImage": {"Quantity": {"N": "5"}}}})
    numeric = {"dynamodb": {"NewImage": {"Quantity": {"N": [{"numeric": [">", 1]}]}}}}
    assert not passes(numeric, record)
    assert passes({"dynamodb": {"NewImage": {"Quantity": {"N": ["5"]}}}}, record)
    assert not passes({"dynamodb": {"NewImage": {"Quantity": {"N": [5]}}}}, record)


def test_views_leave_the_record_untouched() -> None:
    """The views are copies: the record the function receives keeps its body and data as sent."""
    record = {"body": '{"a": 1}'}
    for_sqs(record)
    assert record == {"body": '{"a": 1}'}
    inner = {"data": base64.b64encode(b'{"a": 1}').decode()}
    for_kinesis({"kinesis": inner})
    assert inner["data"] == base64.b64encode(b'{"a": 1}').decode()


# -- invalid patterns ----------------------------------------------------------------------------

INVALID = [
    "",
    "not json",
    "[]",
    '"a"',
    "{}",
    '{"a": 1}',
    '{"a": "x"}',
    '{"a": []}',
    '{"a": {}}',
    '{"a": [[1]]}',
    '{"a": [{"unknown-op": 1}]}',
    '{"a": [{"prefix": "x", "suffix": "y"}]}',
    '{"a": [{"prefix": 1}]}',
    '{"a": [{"prefix": {"anything": "x"}}]}',
    '{"a": [{"suffix": null}]}',
    '{"a": [{"equals-ignore-case": 1}]}',
    '{"a": [{"exists": "true"}]}',
    '{"a": [{"anything-but": []}]}',
    '{"a": [{"anything-but": [true]}]}',
    '{"a": [{"anything-but": {"wildcard": "*x"}}]}',
    '{"a": [{"anything-but": {"prefix": 1}}]}',
    '{"a": [{"numeric": [">", "1"]}]}',
    '{"a": [{"numeric": [">", 1, ">", 2]}]}',
    '{"a": [{"numeric": ["<", 5, ">", 1]}]}',
    '{"a": [{"numeric": [">", 5, "<", 1]}]}',
    '{"a": [{"numeric": ["!=", 1]}]}',
    '{"a": [{"numeric": ["=", 1, "<", 2]}]}',
    '{"a": [{"numeric": [">", 1, "<"]}]}',
    '{"a": [{"numeric": ["=", 1e10]}]}',
    '{"a": [{"numeric": ["=", NaN]}]}',
    '{"a": [{"numeric": ">"}]}',
    '{"a": [{"wildcard": "*.png"}]}',
    '{"a": [{"cidr": "10.0.0.0/24"}]}',
    '{"$or": [{"a": [1]}]}',
    '{"$or": {"a": [1]}}',
    '{"$or": [{"a": [1]}, "b"]}',
    "{" + '"a": {' * 40 + '"b": [1]' + "}" * 41,
    '{"a": [' + "[" * 5000 + "]" * 5000 + "]}",
    '{"a": ["' + "x" * 4096 + '"]}',
]


@pytest.mark.parametrize("text", INVALID, ids=[f"invalid-{i}" for i in range(len(INVALID))])
def test_invalid_patterns_get_aws_message(text: str) -> None:
    """AWS refuses a malformed pattern with InvalidParameterValueException "Invalid filter pattern
    definition." (the message AWS returns for every pattern it cannot parse)."""
    assert refused(text) == "Invalid filter pattern definition."


# -- robustness and speed ------------------------------------------------------------------------


def _random_json(rng: random.Random, depth: int = 0) -> Any:
    kinds = ["str", "int", "float", "bool", "null"] + (["list", "dict"] if depth < 4 else [])
    kind = rng.choice(kinds)
    if kind == "list":
        return [_random_json(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    if kind == "dict":
        keys = ["a", "b", "body", "data", "x"]
        return {rng.choice(keys): _random_json(rng, depth + 1) for _ in range(rng.randint(0, 3))}
    return {
        "str": lambda: rng.choice(["", "a", "us-east-1", "{", "ALICE", "Raining", '{"a": 1}']),
        "int": lambda: rng.randint(-10, 10**12),
        "float": lambda: rng.uniform(-100, 100),
        "bool": lambda: rng.random() < 0.5,
        "null": lambda: None,
    }[kind]()


FUZZ_PATTERNS = [
    '{"a": [1, "a", null, true, {"exists": false}]}',
    '{"a": {"b": [{"numeric": [">", 0, "<=", 5]}]}, "x": [{"exists": true}]}',
    '{"$or": [{"a": [{"prefix": "us"}]}, {"b": [{"anything-but": ["a", 1]}]}]}',
    '{"body": {"a": [{"suffix": {"equals-ignore-case": "X"}}]}}',
    '{"data": [{"anything-but": {"prefix": "{"}}], "b": [{"equals-ignore-case": "alice"}]}',
]


def test_matching_never_raises_on_arbitrary_json() -> None:
    """Whatever JSON a record holds (any types, any nesting), matching answers and never raises."""
    rng = random.Random(12)
    criteria = compile_criteria(FUZZ_PATTERNS)
    for _ in range(5000):
        record = _random_json(rng)
        assert criteria.matches(record) in (True, False)
        if isinstance(record, dict):
            assert criteria.matches(for_sqs(record)) in (True, False)
            assert criteria.matches(for_kinesis(record)) in (True, False)
            assert criteria.matches(for_dynamodb(record)) in (True, False)


def test_deep_records_do_not_exhaust_the_stack() -> None:
    """A record nested far deeper than Python's recursion limit is matched without error."""
    deep: Any = "x"
    for _ in range(50_000):
        deep = [deep]
    criteria = pattern({"a": ["x"]})
    assert criteria.matches({"a": deep})
    assert criteria.matches(for_sqs({"body": "[" * 50_000 + "]" * 50_000})) is False
    assert for_sqs({"body": '{"a":' * 50_000})["body"] == '{"a":' * 50_000


def test_compiled_criteria_match_in_microseconds(capsys: pytest.CaptureFixture[str]) -> None:
    """Matching a compiled filter against a record is cheap (the figure is printed, not asserted:
    the suite makes no timed assertions)."""
    criteria = compile_criteria(FUZZ_PATTERNS)
    record = for_sqs({"body": '{"a": "xx"}', "b": "Alice", "messageId": "m"})
    rounds = 20_000
    started = time.perf_counter()
    for _ in range(rounds):
        criteria.matches(record)
    per_match = (time.perf_counter() - started) / rounds * 1e6
    with capsys.disabled():
        print(f"\nfilters: {per_match:.2f} µs per match of 5 patterns")
