"""The signature against the vendor's published test vectors."""

import pytest

from exporter.api.signing import flatten, sign, signature

VENDOR_PUBLIC = "ucloudsomeone@example.com1296235120854146120"
VENDOR_PRIVATE = "46f09bb9fab4f12dfc160dae12273d5332b5debe"


def test_create_uhost_vector() -> None:
    params = {
        "Action": "CreateUHostInstance",
        "CPU": 2,
        "ChargeType": "Month",
        "DiskSpace": 10,
        "ImageId": "f43736e1-65a5-4bea-ad2e-8a46e18883c2",
        "LoginMode": "Password",
        "Memory": 2048,
        "Name": "Host01",
        "Password": "VUNsb3VkLmNu",
        "Quantity": 1,
        "Region": "cn-bj2",
        "Zone": "cn-bj2-04",
    }
    signed = sign(params, VENDOR_PUBLIC, VENDOR_PRIVATE)
    assert signed["Signature"] == "4f9ef5df2abab2c6fccd1e9515cb7e2df8c6bb65"


def test_list_vector_sorts_by_code_point() -> None:
    backends = ["foo", "bar", 42] * 4
    params = {"Action": "AllocateBackendBatch", "Backends": backends}
    signed = sign(params, VENDOR_PUBLIC, VENDOR_PRIVATE)
    assert signed["Signature"] == "6bc32642779f8cb0bb3d3f128b1c0688abf9a1a3"
    assert "Backends.11" in signed


def test_simple_vector() -> None:
    assert sign({"foo": "bar"}, "my_public_key", "my_private_key")["Signature"] == (
        "d4411ab30953fb0bbcb1e7313081f05e4e91a394"
    )


@pytest.mark.parametrize(
    ("value", "spelled"),
    [(True, "true"), (False, "false"), (42.0, "42"), (0.5, "0.5"), (1e-7, "0.0000001"), (7, "7")],
)
def test_scalar_spelling(value: object, spelled: str) -> None:
    assert flatten({"X": value}) == {"X": spelled}


def test_none_dropped_and_dicts_flattened() -> None:
    assert flatten({"A": None, "B": {"C": 1, "D": [True]}}) == {"B.C": "1", "B.D.0": "true"}


def test_signature_ignores_existing_signature_field() -> None:
    assert signature({"a": "1", "Signature": "x"}, "k") == signature({"a": "1"}, "k")
