"""Prices: a spend that names a model and tokens but no cost is priced by the daemon, exactly."""

from __future__ import annotations

from decimal import Decimal

import pytest

from clawguard.core import budgets, commands, errors, pricing
from clawguard.runtime import config

SPEND = "/api/governance/spend"


def priced_cfg(cfg: config.Config, **models: tuple[str, str]) -> config.Config:
    return cfg.model_copy(update={"prices": {
        model: config.PriceConfig.model_validate(
            {"input_per_mtok_usd": price[0], "output_per_mtok_usd": price[1]})
        for model, price in models.items()
    }})


@pytest.mark.parametrize(
    ("price", "tokens_in", "tokens_out", "micros"),
    [
        (("2.50", "10.00"), 1_000, 500, 7_500),  # 2500 + 5000
        (("0.15", "0.60"), 3, 0, 0),  # 0.45 rounds down
        (("0.15", "0.60"), 0, 1, 1),  # 0.6 rounds up
        (("0.25", "0"), 2, 0, 1),  # exactly 0.5: half-up
        (("0.25", "0"), 6, 0, 2),  # exactly 1.5: half-up, not to even
        (("0.1", "0.2"), 1, 1, 0),  # 0.3 exactly, never 0.30000000000000004
    ],
)
def test_cost_is_exact_and_rounded_half_up_once(price, tokens_in, tokens_out, micros):
    p = pricing.Price(Decimal(price[0]), Decimal(price[1]))
    assert pricing.cost_micros(p, tokens_in, tokens_out) == micros


def test_rounding_happens_once_on_the_sum():
    # Each half alone would round up to 1 + 1; the sum, 1.0, is 1.
    p = pricing.Price(Decimal("0.5"), Decimal("0.5"))
    assert pricing.cost_micros(p, 1, 1) == 1


def test_nothing_to_price_by_is_invalid_input():
    table = pricing.table({})
    with pytest.raises(errors.InvalidInput, match="costUsdCents is required"):
        pricing.price_spend(table, None, 10, 10)
    with pytest.raises(errors.InvalidInput, match="inputTokens or outputTokens"):
        pricing.price_spend(table, "gpt-4o", None, None)
    with pytest.raises(errors.InvalidInput, match="'no-such-model'"):
        pricing.price_spend(table, "no-such-model", 1, 1)


def test_the_fingerprint_is_the_body_as_sent():
    given = commands.SpendRequest.model_validate({
        "agentId": "a1", "teamId": "t1", "costUsdCents": Decimal("0.4"), "model": "gpt-4o",
        "inputTokens": 10, "taskId": "x"})
    # The fingerprint of a spend with a cost is what it was before prices existed, so the
    # retry of a spend stored then still replays.
    assert budgets.fingerprint(given) == (
        "ae72e79c31e7ccc1f21d1ce10c061b65b70f766bddb01c87b426bbe1573c1322")
    unpriced = commands.SpendRequest.model_validate(
        {"agentId": "a1", "model": "gpt-4o", "inputTokens": 10})
    priced = unpriced.priced(25)
    assert priced.cost_micros == 25 and priced.cost_usd_cents == Decimal("0.0025")
    assert budgets.fingerprint(unpriced) != budgets.fingerprint(priced)


async def test_a_spend_with_a_model_and_tokens_is_priced(make_client, cfg):
    async with make_client(priced_cfg(cfg, **{"my-model": ("0.15", "0.60")})) as client:
        resp = await client.post(SPEND, json={
            "agentId": "a1", "model": "my-model", "inputTokens": 1_000_003,
            "outputTokens": 7})
        assert resp.status == 200
        body = await resp.json()
        # 1,000,003 * 0.15 + 7 * 0.60 = 150,000.45 + 4.2 = 150,004.65 -> 150,005
        assert body["spend"]["costUsdMicros"] == 150_005
        assert body["priced"] is True
        assert body["price"] == {"model": "my-model", "inputPerMtokUsd": "0.15",
                                 "outputPerMtokUsd": "0.60"}
        summary = await (await client.get(f"{SPEND}/summary?groupBy=model")).json()
        assert summary["groups"] == [{"key": "my-model", "spentUsdMicros": 150_005,
                                      "spends": 1, "inputTokens": 1_000_003, "outputTokens": 7}]


async def test_a_given_cost_always_wins_and_says_nothing_of_prices(client):
    resp = await client.post(SPEND, json={
        "agentId": "a1", "costUsdCents": 1, "model": "gpt-4o", "inputTokens": 10**6})
    body = await resp.json()
    assert resp.status == 200 and body["spend"]["costUsdMicros"] == 10_000
    assert "priced" not in body and "price" not in body


async def test_the_config_overrides_the_bundled_table(make_client, cfg):
    body = {"agentId": "a1", "model": "gpt-4o", "inputTokens": 1_000}
    async with make_client() as client:  # bundled: $2.50 per million input tokens
        resp = await client.post(SPEND, json=body)
        assert (await resp.json())["spend"]["costUsdMicros"] == 2_500
    async with make_client(priced_cfg(cfg, **{"gpt-4o": ("3", "12")})) as client:
        resp = await client.post(SPEND, json=body)
        answer = await resp.json()
        assert answer["spend"]["costUsdMicros"] == 3_000
        assert answer["price"]["inputPerMtokUsd"] == "3"


async def test_an_unknown_model_without_a_cost_is_400_naming_it(client):
    resp = await client.post(SPEND, json={"agentId": "a1", "model": "mystery-9",
                                          "inputTokens": 5})
    body = await resp.json()
    assert resp.status == 400 and set(body) == {"error", "message", "details"}
    assert "mystery-9" in body["message"] and body["details"]["model"] == "mystery-9"
    assert (await (await client.get(f"{SPEND}/summary?groupBy=agent")).json())["groups"] == []


async def test_a_priced_retry_replays_even_after_the_price_changed(make_client, cfg, db_path):
    body = {"agentId": "a1", "model": "m", "inputTokens": 1_000, "idempotencyKey": "k1"}
    async with make_client(priced_cfg(cfg, m=("1", "1"))) as client:
        first = await (await client.post(SPEND, json=body)).json()
    async with make_client(priced_cfg(cfg, m=("2", "2"))) as client:
        again = await client.post(SPEND, json=body)
        replay = await again.json()
        assert again.status == 200 and replay["spend"]["duplicate"] is True
        assert replay["spend"]["costUsdMicros"] == first["spend"]["costUsdMicros"] == 1_000
        other = await client.post(SPEND, json={**body, "inputTokens": 999})
        assert other.status == 409


async def test_spend_by_model_in_metrics_is_bounded(make_client, cfg):
    models = {f"m{i}": ("1", "1") for i in range(60)}
    async with make_client(priced_cfg(cfg, **models)) as client:
        for i in range(60):
            await client.post(SPEND, json={"agentId": "a1", "model": f"m{i}", "inputTokens": 1})
        text = await (await client.get("/metrics")).text()
    lines = [line for line in text.splitlines()
             if line.startswith("clawguard_model_spend_usd_micros_total{")]
    assert len(lines) == 51  # 50 models and "other"
    assert 'clawguard_model_spend_usd_micros_total{model="m0"} 1.0' in lines
    assert 'clawguard_model_spend_usd_micros_total{model="other"} 10.0' in lines
