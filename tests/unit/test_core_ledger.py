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


ROWS = [(1, "k:a", "f1", 10, 100), (2, None, "f2", 20, 101), (3, "k:b", "f3", 30, 102)]


def test_checkpoints_chain_and_cover_the_rows():
    first = ledger.checkpoint(None, ROWS[:2])
    second = ledger.checkpoint(ledger.checkpoint_end(first.details), ROWS[2:])
    assert first.action == second.action == ledger.CHECKPOINT
    assert (first.details["fromSpendId"], first.details["lastSpendId"]) == (0, 2)
    assert second.details["prevDigest"] == first.details["digest"]
    assert ledger.checkpoint(None, []) is None
    problems, covered = ledger.verify_checkpoints(ROWS, [first.details, second.details])
    assert (problems, covered) == ([], 3)
    # a duplicate checkpoint (two daemons wrote one for the same spends) is no problem
    assert ledger.verify_checkpoints(ROWS, [first.details, first.details])[0] == []


@pytest.mark.parametrize(
    ("rows", "problem"),
    [
        (ROWS[:1] + ROWS[2:], "spends 1..3: 2 rows now, 3 when checkpointed"),  # deleted
        ([(1, "k:a", "f1", 11, 100), *ROWS[1:]], "their digest differs"),  # edited
        ([ROWS[0], (2, None, "f2", 20, 101), (2, None, "f2", 20, 101), ROWS[2]],
         "4 rows now, 3 when"),  # added
    ],
)
def test_a_row_deleted_edited_or_added_after_its_checkpoint_is_named(rows, problem):
    point = ledger.checkpoint(None, ROWS).details
    problems, covered = ledger.verify_checkpoints(rows, [point])
    assert covered == 0 and len(problems) == 1 and problem in problems[0]


def test_a_checkpoint_that_does_not_follow_one_is_named():
    orphan = ledger.checkpoint((2, "f" * 64), ROWS[2:]).details
    problems, covered = ledger.verify_checkpoints(ROWS, [orphan])
    assert covered == 0 and "does not follow" in problems[0]
