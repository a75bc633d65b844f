"""Parsing GetUMInferTokenUsage bodies: lenient about shape, strict about numbers."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from exporter.api.errors import ApiError, retcode_error
from exporter.api.response import API_FIELDS, MAX_COUNT, UsageRow, parse_usage, parse_usage_rows
from exporter.core.secrets import mask_secrets
from exporter.core.usage import Totals


def ok(data: object, **extra: object) -> dict[str, object]:
    return {"RetCode": 0, "Action": "GetUMInferTokenUsageResponse", "Data": data, **extra}


FULL = {"InTotal": 100, "OutTotal": 20, "Total": 120, "RequestTotal": 3, "ImageGenerationNum": 1}


def test_totals_map_each_api_field() -> None:
    assert parse_usage(ok(FULL)) == Totals(
        input_tokens=100, output_tokens=20, tokens=120, requests=3, image_generations=1
    )


@pytest.mark.parametrize(
    "body",
    [
        ok({}),
        {"RetCode": "0", "Data": {}},
        ok({"InTotal": None, "Usages": None}),
    ],
)
def test_empty_answers_are_zero(body: object) -> None:
    assert parse_usage(body) == Totals()


@pytest.mark.parametrize("body", [{"RetCode": 0}, ok(None)])
def test_a_success_without_data_is_invalid_not_zero(body: object) -> None:
    """Read as zero, it would settle a period at zero for good."""
    with pytest.raises(ApiError, match="Data missing or null") as caught:
        parse_usage(body)
    assert caught.value.category == "invalid_response" and caught.value.transient


@pytest.mark.parametrize(
    ("value", "expected"),
    [(7, 7), ("7", 7), (" 7 ", 7), (7.0, 7), ("7.0", 7), ("+7", 7), (0, 0), (MAX_COUNT, MAX_COUNT)],
)
def test_numeric_spellings_accepted(value: object, expected: int) -> None:
    assert parse_usage(ok({"RequestTotal": value})).requests == expected


BAD_COUNTS: list[Any] = [
    -1, "-1", 1.5, "1.5", True, False, "abc", "", "1e5", "0x10", "1_000", "٣",
    float("nan"), float("inf"), MAX_COUNT + 1, str(MAX_COUNT + 1), 1e300, [1], {"n": 1},
]


@pytest.mark.parametrize("api_field", list(API_FIELDS.values()))
@pytest.mark.parametrize("value", BAD_COUNTS, ids=repr)
def test_garbage_count_raises_naming_the_field(api_field: str, value: object) -> None:
    with pytest.raises(ApiError) as info:
        parse_usage(ok({**FULL, api_field: value}))
    assert info.value.category == "invalid_response"
    assert info.value.transient
    assert f"Data.{api_field}" in info.value.message


@pytest.mark.parametrize("body", [None, [], "ok", 3, True, [ok(FULL)]], ids=repr)
def test_body_not_an_object_is_invalid(body: object) -> None:
    with pytest.raises(ApiError) as info:
        parse_usage(body)
    assert info.value.category == "invalid_response"


@pytest.mark.parametrize(
    "body", [{"Data": FULL}, {"RetCode": "zero", "Data": FULL}, ok([FULL]), ok("x")], ids=repr
)
def test_missing_retcode_or_bad_data_is_invalid(body: object) -> None:
    with pytest.raises(ApiError) as info:
        parse_usage(body)
    assert info.value.category == "invalid_response"


# Written out from the RetCode table in the API reference, not derived from errors.py.
RETCODES = [  # code, transient, throttled, hint in the message, metric label
    (110, True, False, "gateway timeout: the API gave up after 60 s", "110"),
    (130, True, False, "gateway or auth service failure", "130"),
    (150, True, False, "service unavailable", "150"),
    (153, True, True, "throttled: the exporter lowers its request rate", "153"),
    (161, False, False, "this cloud does not serve the action", "161"),  # the client names it
    (171, False, False, "signature wrong: check api.private_key", "171"),
    (299, False, False, "IAM permission denied for this project/key", "299"),
    (1999, False, False, "unknown RetCode, not retried", "1999"),
    (2000, False, False, "unknown RetCode, not retried", "2000"),  # "> 2000" is transient
    (2001, True, False, "service-specific error, retried", "2001"),
    (99_999, True, False, "service-specific error, retried", "99999"),
    (100_000, True, False, "service-specific error, retried", "other"),
    (-1, False, False, "unknown RetCode, not retried", "other"),
]


@pytest.mark.parametrize(("code", "transient", "throttled", "hint", "label"), RETCODES)
@pytest.mark.parametrize("spelling", [int, str])
def test_nonzero_retcode_raises_classified(code: int, transient: bool, throttled: bool,
                                           hint: str, label: str, spelling: type) -> None:
    with pytest.raises(ApiError) as info:
        parse_usage({"RetCode": spelling(code), "Message": "upstream says no", "Data": FULL})
    err = info.value
    assert (err.category, err.retcode) == ("retcode", code)
    assert (err.transient, err.throttled) == (transient, throttled)
    assert err.message == f"RetCode {code} ({hint}): upstream says no"
    assert err.label == label


def test_api_message_is_one_bounded_line() -> None:
    with pytest.raises(ApiError) as info:
        parse_usage({"RetCode": 171, "Message": "bad\nsig" + "x" * 1000})
    assert "\n" not in info.value.message
    assert len(info.value.message) < 300


def test_rows_parsed_and_unknown_types_skipped() -> None:
    usages = [
        {"Type": "in", "Count": "5", "Timestamp": 1_700_000_000, "Model": "m"},
        {"Type": "future_kind", "Count": "not a number"},
        {"Type": "image_generation", "Count": 2, "Timestamp": "1700000060"},
    ]
    assert parse_usage_rows(ok({"Usages": usages})) == [
        UsageRow("in", 5, 1_700_000_000, "m"),
        UsageRow("image_generation", 2, 1_700_000_060, ""),
    ]


def test_single_object_usages_accepted() -> None:
    row = {"Type": "total", "Count": 9, "Timestamp": 60, "Model": "m"}
    assert parse_usage_rows(ok({"Usages": row})) == [UsageRow("total", 9, 60, "m")]


@pytest.mark.parametrize(
    "row",
    [
        {"Type": "in", "Count": -3, "Timestamp": 0},
        {"Type": "out", "Count": 1, "Timestamp": "yesterday"},
        {"Type": "total", "Count": 1, "Timestamp": 0, "Model": 5},
        "in:5",
    ],
    ids=repr,
)
def test_garbage_row_rejects_the_whole_answer(row: object) -> None:
    body = ok({**FULL, "Usages": [row]})
    with pytest.raises(ApiError, match=r"Data\.Usages\[0\]"):
        parse_usage(body)
    with pytest.raises(ApiError):
        parse_usage_rows(body)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)
count_like = (
    st.integers(min_value=-5, max_value=2**64) | st.floats() | st.booleans() | st.none()
    | st.integers(min_value=-5, max_value=2**64).map(str) | st.text(max_size=6) | json_values
)
shaped = st.fixed_dictionaries(
    {"RetCode": st.sampled_from([0, "0", 153, "x", None])},
    optional={
        "Data": st.dictionaries(st.sampled_from([*API_FIELDS.values(), "Usages"]), count_like)
        | json_values,
        "Message": json_values,
    },
)


@given(st.one_of(json_values, shaped))
def test_parse_returns_sane_totals_or_raises_api_error(body: object) -> None:
    try:
        totals = parse_usage(body)
    except ApiError:
        return
    assert all(type(v) is int and 0 <= v <= MAX_COUNT for v in totals.values())


@given(st.dictionaries(st.sampled_from(list(API_FIELDS.values())),
                       st.integers(min_value=0, max_value=MAX_COUNT)))
def test_valid_counts_round_trip_through_json(data: dict[str, int]) -> None:
    totals = parse_usage(json.loads(json.dumps(ok(data))))
    assert totals.as_dict() == {name: data.get(api, 0) for name, api in API_FIELDS.items()}


def test_a_redacted_copy_keeps_everything_but_the_secret() -> None:
    cause = ValueError("underlying")
    err = ApiError("http", "HTTP 503 for key s3cr3t-value and s3cr3t-value", retcode=7,
                   http_status=503, transient=True, throttled=True, retry_after=2.5)
    err.__cause__ = cause
    copy = err.redacted(("", "s3cr3t-value"))
    assert copy.message == str(copy) == "HTTP 503 for key [redacted] and [redacted]"
    assert (copy.category, copy.retcode, copy.http_status, copy.transient, copy.throttled,
            copy.retry_after, copy.__cause__) == ("http", 7, 503, True, True, 2.5, cause)
    assert err.redacted(("absent",)) is err


@pytest.mark.parametrize(("secret", "text", "masked"), [
    # Under 8 characters a "secret" is no real key: masking it would rewrite prose.
    ("wrong", "RetCode 171 (signature wrong: check api.private_key)", None),
    ("1234567", "port 1234567 is closed", None),
    # 8 to 15 characters: masked where it stands as a value (a whole token), not inside words.
    ("hunter22", "key hunter22 refused", "key * refused"),
    ("hunter22", 'PrivateKey="hunter22"&x', 'PrivateKey="*"&x'),
    ("hunter22", "xhunter22 and hunter22x", None),
    ("hunter22", "hunter22", "*"),
    ("signatur", "signature wrong", None),
    ("wrongkey", "übwrongkey", None),
    # 16 characters and more: masked wherever it appears, even glued to other text.
    ("46f09bb9fab4f12d", "PublicKeyabc46f09bb9fab4f12dxyz", "PublicKeyabc*xyz"),
])
def test_secrets_are_masked_as_values_not_as_prose(secret: str, text: str,
                                                     masked: str | None) -> None:
    assert mask_secrets(text, [secret], "*") == (text if masked is None else masked)


def test_the_longer_of_two_overlapping_secrets_is_masked_whole() -> None:
    assert mask_secrets("a abcdefgh12345678 b", ["abcdefgh", "abcdefgh12345678"], "*") == "a * b"


def test_a_short_private_key_leaves_the_api_hint_intact() -> None:
    err = retcode_error(171, "Signature wrong")
    assert err.redacted(("wrong", "")).message == \
        "RetCode 171 (signature wrong: check api.private_key): Signature wrong"


@pytest.mark.parametrize(("message", "shown"), [
    ("a\x07b\tc", "a b c"),
    ("x" * 200, "x" * 200),
    ("x" * 201, "x" * 200 + "…"),
])
def test_the_api_message_is_quoted_printable_and_cut_at_200(message: str, shown: str) -> None:
    with pytest.raises(ApiError) as info:
        parse_usage({"RetCode": 171, "Message": message})
    assert info.value.message == f"RetCode 171 (signature wrong: check api.private_key): {shown}"


@pytest.mark.parametrize(("item", "message"), [
    ("x", "Data.Usages[1] is a JSON string, not an object"),
    ([1], "Data.Usages[1] is a JSON array, not an object"),
    (True, "Data.Usages[1] is a JSON boolean, not an object"),
    (None, "Data.Usages[1] is a JSON null, not an object"),
    (1.5, "Data.Usages[1] is a JSON number, not an object"),
    ({"Type": "in", "Count": 1, "Model": 5}, "Data.Usages[1].Model is not a string: 5"),
    ({"Type": "in", "Count": 1, "Model": ["m"]}, "Data.Usages[1].Model is not a string: ['m']"),
])
def test_a_bad_usage_row_is_named_by_place_and_json_type(item: object, message: str) -> None:
    usages = [{"Type": "in", "Count": 1}, item]
    with pytest.raises(ApiError) as info:
        parse_usage_rows(ok({"Usages": usages}))
    assert info.value.message == f"invalid response: {message}"
