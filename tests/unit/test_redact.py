"""Secrets masked before anything is stored: by key name, by value shape, at any depth."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from clawguard.core import audit, redact
from clawguard.core.redact import MASK


@pytest.mark.parametrize(
    ("value", "masked"),
    [
        # by key name; a None is left as it is (nothing to hide)
        ({"apiKey": "abc", "password": "p", "authToken": None},
         {"apiKey": MASK, "password": MASK, "authToken": None}),
        ({"inputTokens": 12, "max_tokens": 5, "author": "ada"},
         {"inputTokens": 12, "max_tokens": 5, "author": "ada"}),
        # by value shape, the shortest of each
        ("bearer 12345678", MASK),
        ("xoxb-1234567890", MASK),
        ("sk-" + "a" * 16, MASK),
        ("ghp_" + "a" * 20, MASK),
        ("AKIA" + "A" * 16, MASK),
        # one character short of each: left alone
        ("bearer 1234567", "bearer 1234567"),
        ("xoxb-123456789", "xoxb-123456789"),
        ("sk-" + "a" * 15, "sk-" + "a" * 15),
        # inside text, lists, tuples and nested objects
        ("run it with sk-abcdefghijklmnopqrstu now", f"run it with {MASK} now"),
        ({"args": ["ok", ("Bearer abcdefghij",)], "n": {"cookie": 1}},
         {"args": ["ok", [MASK]], "n": {"cookie": MASK}}),
        (7, 7),
        (None, None),
    ],
)
def test_redact(value: Any, masked: Any) -> None:
    assert redact.redact(value) == masked


def test_no_text_shorter_than_the_shortest_secret_value_can_match() -> None:
    parsed = re._parser.parse(redact._SECRET_VALUE.pattern)  # type: ignore[attr-defined]
    assert parsed.getwidth()[0] == redact.SHORTEST_SECRET_VALUE


@pytest.mark.parametrize(
    "value",
    [{"b": 1, "a": [1.5, None, True]}, "é ✓", [], {"z": {"y": "\n"}}, 10**30],
)
def test_canonical_is_json_dumps_sorted_and_compact(value: Any) -> None:
    expected = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert audit.canonical(value) == expected
