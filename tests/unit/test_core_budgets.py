"""The budget deciders as tables: no database, no HTTP; what each engine applies."""

from __future__ import annotations

from decimal import Decimal

import pytest

from clawguard.core import budgets, commands, errors, principals, records

OPS = principals.Principal("key_o", "ops", "operator")

C = 10_000  # micros per cent
NOW = 1_800_000_000_000


def budget(limit=100, spent=0, status="active", mode="cap", scope="team", sid="t1", tenant=None):
    return records.Budget(
        id="bud_1", scope=scope, scope_id=sid, tenant_id=tenant, limit_usd_cents=limit,
        spent_usd_cents=spent // C, spent_usd_micros=spent, held_usd_cents=0, status=status,
        mode=mode, created_at=1, updated_at=1,
    )


def spend(cents, **ids):
    return commands.SpendRequest.model_validate(
        {"costUsdCents": Decimal(str(cents)), **({"agentId": "a1"} | ids)}
    )


def level(limit=100, spent=0, status="active", mode="cap", scope="agent", sid="a1", bid="b"):
    return budgets.Level(bid, scope, sid, limit, spent, status, mode)


# --- charge -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("before", "cents", "mode", "crossed", "status", "actions"),
    [
        (0, 1, "cap", "none", "active", []),
        (79 * C, 1, "cap", "soft", "soft_capped", ["budget.crossed_soft"]),
        (80 * C, 1, "cap", "none", "soft_capped", []),  # soft fires once
        (99 * C, 1, "cap", "hard", "paused", ["budget.crossed_hard", "budget.paused"]),
        (0, 150, "cap", "hard", "paused", ["budget.crossed_hard", "budget.paused"]),  # only hard
        (99 * C, 1, "warn", "hard", "soft_capped", ["budget.crossed_hard"]),  # warn never pauses
        (100 * C, 1, "cap", "none", "paused", []),  # an already-paused scope: charged, silent
    ],
)
def test_charge_reports_each_crossing_once(before, cents, mode, crossed, status, actions):
    paused = "paused" if before >= 100 * C and mode == "cap" else "active"
    row = level(spent=before, mode=mode, status=paused)
    outcome = budgets.charge([row], spend(cents), NOW)
    [state] = outcome.scopes
    assert (state.crossed, state.status) == (crossed, status)
    assert state.spent_usd_micros == before + cents * C
    assert [event.action for event in outcome.events] == actions
    assert outcome.levels == [(row, before + cents * C, status, None)]
    assert row.spent == before  # the decider decides; the engine applies


def test_charge_keeps_chain_order_and_charges_every_scope():
    chain = [level(scope="agent", bid="a"), level(scope="team", sid="t1", bid="t", limit=1)]
    outcome = budgets.charge(chain, spend(1, teamId="t1"), NOW)
    assert [(s.scope, s.status) for s in outcome.scopes] == [("agent", "active"),
                                                              ("team", "paused")]
    assert budgets.stop_reason(outcome.scopes) == "budget_paused:team"


def test_charge_refuses_an_overflow_before_deciding_anything():
    with pytest.raises(errors.Unprocessable):
        budgets.charge([level(spent=2**63 - 10)], spend(1), NOW)


def test_in_chain_order():
    rows = [level(scope=s, bid=s) for s in ("tenant", "agent", "team", "mission")]
    assert [r.scope for r in budgets.in_chain_order(rows)] == ["agent", "mission", "team",
                                                               "tenant"]


# --- set, resume, delete --------------------------------------------------------------


def setting(limit, mode=None):
    body = {"scope": "team", "scopeId": "t1", "limitUsdCents": limit}
    return commands.BudgetSet.model_validate(body | ({"mode": mode} if mode else {}))


@pytest.mark.parametrize(
    ("existing", "limit", "mode", "status", "kept_mode", "paused_event"),
    [
        (None, 100, None, "active", "warn", False),  # a new row defaults to warn
        (None, 100, "cap", "active", "cap", False),
        (budget(spent=90 * C), 100, None, "soft_capped", "cap", False),  # mode kept
        (budget(spent=90 * C), 80, None, "paused", "cap", True),  # lowered under spend
        (budget(spent=120 * C, status="paused"), 200, None, "active", "cap", False),
        (budget(spent=120 * C, status="paused"), 100, None, "paused", "cap", False),
        (budget(spent=120 * C, status="paused"), 100, "warn", "soft_capped", "warn", False),
    ],
)
def test_set_budget(existing, limit, mode, status, kept_mode, paused_event):
    change = budgets.set_budget(existing, setting(limit, mode), NOW, "bud_new", OPS)
    assert change.created is (existing is None)
    assert (change.budget.status, change.budget.mode) == (status, kept_mode)
    actions = [event.action for event in change.events]
    assert actions == (["budget.paused"] if paused_event else []) + ["budget.set"]


@pytest.mark.parametrize(
    ("spent", "limit", "grace", "new_limit", "status", "repause"),
    [
        (120 * C, 100, 50, 170, "active", False),
        (120 * C, 100, 10, 130, "soft_capped", False),
        (120 * C, 100, None, 100, "active", True),
        (50 * C, 100, 30, 100, "active", False),  # grace only when spent out
    ],
)
def test_resume(spent, limit, grace, new_limit, status, repause):
    before = budget(limit=limit, spent=spent, status="paused" if spent >= limit * C else "active")
    resumed, events = budgets.resume_budget(before, "team", "t1", grace, NOW, OPS)
    assert (resumed.budget.limit_usd_cents, resumed.budget.status) == (new_limit, status)
    assert resumed.will_repause is repause
    assert events[-1].action == "budget.resumed"


@pytest.mark.parametrize("decider", [
    lambda: budgets.resume_budget(None, "team", "t1", None, NOW, OPS),
    lambda: budgets.delete_budget(None, "team", "t1", OPS),
])
def test_a_missing_row_is_not_found(decider):
    with pytest.raises(errors.NotFound):
        decider()


# --- idempotency --------------------------------------------------------------------


def test_fingerprint_ignores_the_key_and_the_amount_spelling():
    a = spend("0.4", idempotencyKey="k1")
    b = spend("0.40", idempotencyKey="k2")
    assert budgets.fingerprint(a) == budgets.fingerprint(b)
    assert budgets.fingerprint(a) != budgets.fingerprint(spend("0.5"))
    assert budgets.fingerprint(a) != budgets.fingerprint(spend("0.4", teamId="t1"))


def test_fingerprint_is_a_canonical_json_of_named_fields():
    """Not a repr of a tuple: a field set to null and one left out are the same spend."""
    with_null = commands.SpendRequest.model_validate(
        {"agentId": "a1", "costUsdCents": 1, "model": None})
    assert budgets.fingerprint(with_null) == budgets.fingerprint(spend(1))


def test_replay_answers_the_first_outcome_or_409():
    first = budgets.charge([level()], spend(1), NOW)
    stored = budgets.StoredSpend(7, "fp", 10_000,
                                 records.SCOPE_STATES.dump_json(first.scopes, by_alias=True))
    replayed = budgets.replay(stored, "fp")
    assert replayed.spend.duplicate and replayed.spend.id == 7
    assert replayed.scopes == first.scopes
    with pytest.raises(errors.IdempotencyConflict):
        budgets.replay(stored, "other")


@pytest.mark.parametrize(
    ("body", "kept"),
    [({}, "org"), ({"tenantId": "org2"}, "org2"), ({"tenantId": None}, None)],
)
def test_set_budget_keeps_the_tenant_unless_it_is_given(body, kept):
    request = commands.BudgetSet.model_validate(
        {"scope": "team", "scopeId": "t1", "limitUsdCents": 100, **body})
    change = budgets.set_budget(budget(tenant="org"), request, NOW, "bud_new", OPS)
    assert change.budget.tenant_id == kept
    assert change.events[-1].details["tenantId"] == kept
    assert change.events[-1].details["previousTenantId"] == "org"
