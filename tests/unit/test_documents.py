"""documents.dumps: Decimals written as their own digits, through the C encoder, and a string
that looks like the encoder's Decimal mark left a string."""

from __future__ import annotations

from decimal import Decimal
from types import MappingProxyType

import pytest

from clawguard.core import documents


@pytest.mark.parametrize(("value", "text"), [
    ({"a": Decimal("250.10"), "b": [1, "x", None, True]}, '{"a":250.10,"b":[1,"x",null,true]}'),
    ([Decimal("-1E+3"), Decimal("0.00025")], "[-1E+3,0.00025]"),
    (MappingProxyType({"k": "é"}), '{"k":"é"}'),
    ({"m": MappingProxyType({"n": Decimal("1.0")})}, '{"m":{"n":1.0}}'),
    ({"s": "\x00decimal:5", "v": Decimal("1.0")}, '{"s":"\\u0000decimal:5","v":1.0}'),
    ({"s": "\x00decimal:5"}, '{"s":"\\u0000decimal:5"}'),
    ((1, 2), "[1,2]"),
])
def test_dumps_is_exact(value: object, text: str) -> None:
    assert documents.dumps(value) == text


@pytest.mark.parametrize("value", [Decimal("NaN"), Decimal("Infinity"), {"x": Decimal("-Inf")}])
def test_non_finite_decimals_are_refused(value: object) -> None:
    with pytest.raises(ValueError, match="not a JSON number"):
        documents.dumps(value)


def test_other_types_are_refused() -> None:
    with pytest.raises(TypeError, match="set is not a JSON value"):
        documents.dumps({"x": {1, 2}})
