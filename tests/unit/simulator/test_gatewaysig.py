"""Three signers agree: the exporter's, the simulator's independent check, and the vendor SDK's.

The simulator verifies signatures with its own reading of the algorithm
(``exporter.simulator.gatewaysig``), so an end-to-end test sees a signing bug in the exporter.
Both are held to the vendor's published vectors and, on random parameter sets, to the vendor's
Python SDK (``ucloud-sdk-python3``, a test-only dependency), used here as an oracle.
"""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st
from ucloud.core.auth import Credential
from ucloud.core.typesystem import encoder

from exporter.api.signing import sign
from exporter.simulator.api import GatewayError, check_signature
from exporter.simulator.gatewaysig import flatten, signature, spell

VENDOR_PUBLIC = "ucloudsomeone@example.com1296235120854146120"
VENDOR_PRIVATE = "46f09bb9fab4f12dfc160dae12273d5332b5debe"
UHOST = {
    "Action": "CreateUHostInstance", "CPU": "2", "ChargeType": "Month", "DiskSpace": "10",
    "ImageId": "f43736e1-65a5-4bea-ad2e-8a46e18883c2", "LoginMode": "Password",
    "Memory": "2048", "Name": "Host01", "Password": "VUNsb3VkLmNu", "Quantity": "1",
    "Region": "cn-bj2", "Zone": "cn-bj2-04", "PublicKey": VENDOR_PUBLIC,
}
BACKENDS = {"Action": "AllocateBackendBatch", "PublicKey": VENDOR_PUBLIC,
            **{f"Backends.{i}": ("foo", "bar", "42")[i % 3] for i in range(12)}}


@pytest.mark.parametrize(("params", "private", "expected"), [
    (UHOST, VENDOR_PRIVATE, "4f9ef5df2abab2c6fccd1e9515cb7e2df8c6bb65"),
    (BACKENDS, VENDOR_PRIVATE, "6bc32642779f8cb0bb3d3f128b1c0688abf9a1a3"),
    ({"foo": "bar", "PublicKey": "my_public_key"}, "my_private_key",
     "d4411ab30953fb0bbcb1e7313081f05e4e91a394"),
], ids=["CreateUHostInstance", "AllocateBackendBatch", "foo=bar"])
def test_published_vectors(params: dict[str, str], private: str, expected: str) -> None:
    assert signature(params, private) == expected
    assert signature({**params, "Signature": "anything"}, private) == expected
    check_signature({**params, "Signature": expected.upper()}, {params["PublicKey"]: private})


def test_a_wrong_signature_or_key_is_refused_with_its_retcode() -> None:
    keys = {"my_public_key": "my_private_key"}
    good = {"foo": "bar", "PublicKey": "my_public_key",
            "Signature": "d4411ab30953fb0bbcb1e7313081f05e4e91a394"}
    for params, code in [({**good, "foo": "baz"}, 171), ({**good, "Signature": ""}, 170),
                         ({**good, "PublicKey": "someone-else"}, 172)]:
        with pytest.raises(GatewayError) as info:
            check_signature(params, keys)
        assert info.value.retcode == code


@pytest.mark.parametrize(("value", "spelled"), [
    (True, "true"), (False, "false"), (42.0, "42"), (-3.0, "-3"), (0.5, "0.5"),
    (1e-7, "0.0000001"), (7, "7"), ("x y", "x y")])
def test_values_are_spelled_as_the_gateway_signs_them(value: object, spelled: str) -> None:
    assert spell(value) == spelled


def test_nested_json_parameters_flatten_like_the_reference() -> None:
    assert flatten({"A": None, "B": {"C": 1, "D": [True, 2.0]}, "E": ["x"]}) == {
        "B.C": "1", "B.D.0": "true", "B.D.1": "2", "E.0": "x"}


NAMES = st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_", min_size=1,
                max_size=12).filter(lambda n: n not in {"PublicKey", "Signature"})
# Floats the SDK prints without an exponent: for tiny ones (1e-07) it differs from the API
# reference, which says never scientific notation (test_values_are_spelled_... pins ours).
FLOATS = st.floats(min_value=-1e15, max_value=1e15, allow_nan=False).filter(
    lambda f: "e" not in repr(f))
SCALARS = st.one_of(st.text(max_size=20), st.integers(-(2**63), 2**63), st.booleans(), FLOATS)
VALUES = st.one_of(SCALARS, st.lists(SCALARS, max_size=12),
                   st.dictionaries(NAMES, SCALARS, max_size=4))
KEYS = st.text(min_size=1, max_size=40)


@given(st.dictionaries(NAMES, VALUES, max_size=8), KEYS, KEYS)
def test_exporter_simulator_and_vendor_sdk_agree(params: dict[str, object], public: str,
                                                 private: str) -> None:
    vendor = Credential(public, private).verify_ac(encoder.encode(params))
    form = sign(params, public, private)
    assert form["Signature"] == vendor
    assert flatten({**params, "PublicKey": public}) == {
        k: v for k, v in form.items() if k != "Signature"}
    assert signature(form, private) == vendor
    check_signature(form, {public: private})


SIGNER_CASES = 1200
_TEXTS = ("", " ", "deepseek-ai/DeepSeek-V3", "元/百万tokens", "ключ", "🔑 emoji", "e\u0301",
          "a&b=c", "100%", "\t\n", "'\"\\")


def _scalar(rng: random.Random) -> object:
    kind = rng.randrange(6)
    if kind == 0:
        return rng.choice(_TEXTS) + "".join(chr(rng.randrange(0x20, 0x2FFF))
                                            for _ in range(rng.randrange(4)))
    if kind == 1:
        return ""
    if kind == 2:
        return rng.choice((0, -1, 2**31, 2**63 - 1, -(2**63), 10**30, rng.randrange(-10**18,
                                                                                    10**18)))
    if kind == 3:
        value = round(rng.uniform(-1e12, 1e12), rng.randrange(8))
        return value if "e" not in repr(value) else 0.5
    if kind == 4:
        return rng.random() < 0.5
    return rng.randrange(1000)


def _value(rng: random.Random) -> object:
    shape = rng.randrange(5)
    if shape == 0:
        return [_scalar(rng) for _ in range(rng.randrange(12))]
    if shape == 1:
        return {f"F{i}": _scalar(rng) for i in range(rng.randrange(4))}
    return _scalar(rng)


def test_the_vendor_signer_agrees_on_a_thousand_generated_parameter_sets() -> None:
    rng = random.Random(12)
    seen: set[str] = set()
    for case in range(SIGNER_CASES):
        params = {f"P{case % 7}{i}": _value(rng) for i in range(rng.randrange(1, 9))}
        public, private = rng.choice(_TEXTS) + str(case), rng.choice(_TEXTS) + "pk"
        vendor = Credential(public, private).verify_ac(encoder.encode(params))
        form = sign(params, public, private)
        assert form["Signature"] == vendor, (case, params)
        check_signature(form, {public: private})
        for value in params.values():
            seen.update(type(v).__name__ for v in (value, *(value if isinstance(value, list)
                                                             else ())))
    assert {"str", "int", "float", "bool", "list", "dict"} <= seen
