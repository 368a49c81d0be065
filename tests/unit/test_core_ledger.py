"""The ledger invariant's judge as a table."""

from __future__ import annotations

import pytest

from clawguard.core import ledger


@pytest.mark.parametrize(
    ("levels", "charges", "ok", "words"),
    [
        ([("b1", 10, 10), ("b2", 0, 0)], [], True, []),
        ([("b1", 11, 10)], [], False, ["budget b1: spent 11 micros, but its charges sum to 10"]),
        ([("b1", 10, 10)], [("b1", 7, 10, 9)], False, ["by spend 7, which cost 9"]),
        ([("b1", 10, 10)], [("b1", 7, 10, None)], False, ["spend 7, which is not in the ledger"]),
    ],
)
def test_verify(levels, charges, ok, words):
    verdict = ledger.verify(levels, charges)
    assert verdict.ok is ok and verdict.budgets == len(levels)
    assert len(verdict.problems) == len(words)
    for problem, word in zip(verdict.problems, words, strict=True):
        assert word in problem
