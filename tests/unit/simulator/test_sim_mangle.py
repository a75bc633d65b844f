"""Body faults, applied to an answer directly: each spoils (or leniently reshapes) exactly what
it says, and never the answer it was given."""

import json
from typing import Any

import pytest

from exporter.simulator.faults import Fault, FaultKind
from exporter.simulator.mangle import encode, mangle

#: The answer's Data fields as api.md names them: spelt here, not taken from either side.
DATA_NAMES = ("InTotal", "OutTotal", "Total", "RequestTotal", "ImageGenerationNum")


def answer() -> dict[str, Any]:
    """A GetUMInferTokenUsage answer with two rows; no image was made (a zero count)."""
    return {"RetCode": 0, "Action": "GetUMInferTokenUsageResponse", "Message": "",
            "Data": {"InTotal": 1200, "OutTotal": 300, "Total": 1500, "RequestTotal": 4,
                     "ImageGenerationNum": 0,
                     "Usages": [{"Type": "in", "Count": 1200, "Timestamp": 60, "Model": "m"},
                                {"Type": "out", "Count": 300, "Timestamp": 60, "Model": "m"}]}}


def counts(body: dict[str, Any]) -> list[object]:
    data = body["Data"]
    return [data[name] for name in DATA_NAMES] + [row["Count"] for row in data["Usages"]]


@pytest.mark.parametrize(("garbage", "spoilt"), [
    ("string", ["1200abc", "300abc", "1500abc", "4abc", "0abc", "1200abc", "300abc"]),
    ("float", [1200.5, 300.5, 1500.5, 4.5, 0.5, 1200.5, 300.5]),
    ("bool", [True] * 7),
], ids=["string", "float", "bool"])
def test_wrong_types_spoil_every_count(garbage: str, spoilt: list[object]) -> None:
    body = mangle(answer(), Fault(FaultKind.WRONG_TYPE, garbage=garbage))
    assert counts(body) == spoilt
    assert [type(c) for c in counts(body)] == [type(c) for c in spoilt]


def test_negative_counts_fall_below_zero_even_from_zero() -> None:
    body = mangle(answer(), Fault(FaultKind.NEGATIVE))
    assert counts(body) == [-1201, -301, -1501, -5, -1, -1201, -301]


def test_a_fault_leaves_the_answer_it_was_given_alone() -> None:
    given = answer()
    for kind in FaultKind:
        mangle(given, Fault(kind))
    assert given == answer()


def test_usages_as_one_object_keep_the_first_row() -> None:
    body = mangle(answer(), Fault(FaultKind.USAGES_OBJECT))
    assert body["Data"]["Usages"] == {"Type": "in", "Count": 1200, "Timestamp": 60, "Model": "m"}
    empty = answer()
    empty["Data"]["Usages"] = []
    assert mangle(empty, Fault(FaultKind.USAGES_OBJECT))["Data"]["Usages"] == {}


def test_shape_faults_leave_an_answer_without_that_part_alone() -> None:
    rowless = answer()
    del rowless["Data"]["Usages"]
    assert mangle(rowless, Fault(FaultKind.USAGES_OBJECT)) == rowless
    assert mangle(rowless, Fault(FaultKind.NEGATIVE))["Data"]["Total"] == -1501
    error = {"RetCode": 150, "Message": "Service unavailable"}
    for kind in (FaultKind.USAGES_OBJECT, FaultKind.EMPTY_DATA, FaultKind.ABSURD):
        assert mangle(error, Fault(kind)) == error
    assert mangle(answer(), Fault(FaultKind.EMPTY_DATA))["Data"] == {}


def test_a_malformed_answer_is_cut_in_the_middle_even_the_smallest() -> None:
    whole = json.dumps(answer()).encode()
    cut = encode(answer(), Fault(FaultKind.MALFORMED))
    assert whole.startswith(cut)
    assert len(cut) == len(whole) // 2
    assert encode({}, Fault(FaultKind.MALFORMED)) == b"{"


def test_without_a_fault_the_answer_is_sent_as_it_is() -> None:
    assert json.loads(encode(answer())) == answer()
    assert json.loads(encode(answer(), Fault(FaultKind.LATENCY))) == answer()
    assert json.loads(encode(answer(), Fault(FaultKind.STRING_RETCODE)))["RetCode"] == "0"
