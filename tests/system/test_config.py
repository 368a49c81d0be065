"""Configuration: the example file, environment overrides, and errors that name the key."""

from __future__ import annotations

import re
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from clawguard.core import errors
from clawguard.runtime import config

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "config.example.toml"


def test_example_file_loads_and_equals_the_defaults():
    assert config.load(EXAMPLE, environ={}) == config.Config()


def test_every_setting_is_documented_in_the_example():
    # A setting with no default is shown commented out, as TOML has no null; so is the
    # [prices."MODEL"] table, whose sections are named by the models.
    documented = set(re.findall(r"^(?:# )?(\w+) = ", EXAMPLE.read_text(), re.MULTILINE))
    sections = set(re.findall(r'^(?:# )?\[(\w+)(?:\."[^"]+")?\]', EXAMPLE.read_text(),
                              re.MULTILINE))
    tables = {name: field.annotation for name, field in config.Config.model_fields.items()}
    tables["prices"] = config.PriceConfig  # dict[model, PriceConfig]
    fields = set()
    for table in tables.values():
        for key in table.model_fields:  # type: ignore[union-attr]
            if key == "plans":  # [quotas.plans.NAME]: a table of plans, each key documented
                fields |= set(config.PlanConfig.model_fields)
            elif key == "webhooks":  # [[notify.webhooks]]: an array of tables
                fields |= set(config.WebhookConfig.model_fields)
            else:
                fields.add(key)
    assert sections == set(config.Config.model_fields)
    assert documented == fields


def test_the_commented_webhook_example_is_a_valid_setting(tmp_path):
    text = EXAMPLE.read_text().split("[[notify.webhooks]]", 1)[1]
    path = tmp_path / "c.toml"
    path.write_text("[[notify.webhooks]]\n" + "\n".join(
        line.removeprefix("# ") for line in text.splitlines()
        if re.match(r"# (url|events|secret|format) = ", line)))
    [hook] = config.load(path, environ={}).notify.webhooks
    assert hook.url == "https://hooks.example.com/clawguard" and hook.format == "json"
    assert hook.events == list(config.WebhookConfig(url=hook.url, secret="s").events)


def test_the_commented_price_example_is_a_valid_setting(tmp_path):
    text = EXAMPLE.read_text().split("# Model prices", 1)[1].split("\n[", 1)[0]
    path = tmp_path / "c.toml"
    path.write_text("\n".join(line.removeprefix("# ") for line in text.splitlines()
                              if line.startswith(("# [", "# input", "# output"))))
    table = config.load(path, environ={}).price_table()
    assert table["my-fine-tuned-model"].input_per_mtok_usd == Decimal("0.30")
    assert table["gpt-4o"].input_per_mtok_usd == Decimal("2.50")  # bundled ones stay


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ('[prices."m1"]\ninput_per_mtok_usd = -1\noutput_per_mtok_usd = 1\n',
         "prices.m1.input_per_mtok_usd"),
        ('[prices."m1"]\ninput_per_mtok_usd = "1.x"\noutput_per_mtok_usd = 1\n',
         "prices.m1.input_per_mtok_usd"),
        ('[prices."m1"]\ninput_per_mtok_usd = 1\noutput_per_mtok_usd = true\n',
         "prices.m1.output_per_mtok_usd"),
        ('[prices."m1"]\ninput_per_mtok_usd = 1\noutput_per_mtok_usd = nan\n',
         "prices.m1.output_per_mtok_usd"),
        ('[prices."m1"]\ninput_per_mtok_usd = 1\n', "prices.m1.output_per_mtok_usd"),
        ('[prices."m1"]\ninput_per_mtok_usd = 1\noutput_per_mtok_usd = 1\ncached = 1\n',
         "prices.m1.cached"),
        ('[prices."m1"]\ninput_per_mtok_usd = 1\noutput_per_mtok_usd = 20000\n',
         "prices.m1.output_per_mtok_usd"),
    ],
)
def test_bad_prices_name_the_key(tmp_path, text, named):
    path = tmp_path / "c.toml"
    path.write_text(text)
    with pytest.raises(errors.ConfigError, match=re.escape(named)):
        config.load(path, environ={})


def test_prices_are_decimals_never_floats(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[prices."gpt-4o"]\ninput_per_mtok_usd = 0.1\n'
                    'output_per_mtok_usd = "0.30000000000000004"\n')
    price = config.load(path, environ={}).price_table()["gpt-4o"]  # overrides the bundled
    assert price.input_per_mtok_usd == Decimal("0.1")
    assert price.output_per_mtok_usd == Decimal("0.30000000000000004")


def test_environment_overrides_the_file(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[server]\nport = 1234\n[storage]\npath = "a.db"\n')
    cfg = config.load(path, environ={"CLAWGUARD_SERVER_PORT": "0", "CLAWGUARD_URL": "x"})
    assert cfg.server.port == 0 and cfg.storage.path == "a.db"


def test_config_file_from_the_environment(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("[server]\nport = 4321\n")
    assert config.load(environ={"CLAWGUARD_CONFIG": str(path)}).server.port == 4321


@pytest.mark.parametrize(
    ("text", "environ", "named"),
    [
        ("[server]\nprot = 1\n", {}, "server.prot"),
        ("[server]\nport = 70000\n", {}, "server.port"),
        ('[server]\nport = "many"\n', {}, "server.port"),
        ("[storge]\npath = 'x'\n", {}, "storge"),
        ("", {"CLAWGUARD_STORAGE_BATCH_MAX": "0"}, "storage.batch_max"),
        ("", {"CLAWGUARD_SERVER_BOGUS": "1"}, "server.bogus"),
        ("[server\n", {}, "not valid TOML"),
    ],
)
def test_bad_settings_name_the_key(tmp_path, text, environ, named):
    path = tmp_path / "c.toml"
    path.write_text(text)
    with pytest.raises(errors.ConfigError, match=re.escape(named)):
        config.load(path, environ=environ)


def test_check_config_command_reports_and_exits_nonzero(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("[server]\nport = -1\n")
    bad = subprocess.run([sys.executable, "-m", "clawguard", "check-config", "--config", str(path)],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "server.port" in bad.stderr
    good = subprocess.run([sys.executable, "-m", "clawguard", "check-config", "--config",
                           str(EXAMPLE)], capture_output=True, text=True)
    assert good.returncode == 0 and '"port": 18790' in good.stdout


def test_approvals_settings_defaults_and_environment():
    assert config.Config().approvals == config.ApprovalsConfig(
        ttl_ms=300_000, wait_ms=120_000, sweep_ms=1_000, sticky_ttl_ms=0,
    )
    cfg = config.load(environ={"CLAWGUARD_APPROVALS_WAIT_MS": "500",
                               "CLAWGUARD_APPROVALS_STICKY_TTL_MS": "60000"})
    assert cfg.approvals.wait_ms == 500 and cfg.approvals.sticky_ttl_ms == 60_000


@pytest.mark.parametrize(
    ("key", "value"),
    [("TTL_MS", "0"), ("WAIT_MS", "-1"), ("SWEEP_MS", "0"), ("STICKY_TTL_MS", "-5"),
     ("TTL_MS", "soon"), ("TIMEOUT_MS", "5")],
)
def test_bad_approvals_settings_name_the_key(key, value):
    with pytest.raises(errors.ConfigError, match=f"approvals.{key.lower()}"):
        config.load(environ={f"CLAWGUARD_APPROVALS_{key}": value})


@pytest.mark.parametrize(
    ("settings", "engine", "location"),
    [
        ({}, "sqlite", "clawguard.db"),
        ({"path": "a.db"}, "sqlite", "a.db"),
        ({"path": "a.db", "url": "b.db"}, "sqlite", "b.db"),  # url wins over path
        ({"url": "sqlite:///rel/c.db"}, "sqlite", "rel/c.db"),
        ({"url": "sqlite:////abs/c.db"}, "sqlite", "/abs/c.db"),
        ({"url": "postgresql://u@h:5/d"}, "postgres", "postgresql://u@h:5/d"),
        ({"url": "postgres://u@h/d"}, "postgres", "postgres://u@h/d"),
    ],
)
def test_storage_url_chooses_the_engine(settings, engine, location):
    storage = config.StorageConfig(**settings)
    assert (storage.engine, storage.location) == (engine, location)


def test_an_unknown_url_scheme_names_the_key():
    with pytest.raises(errors.ConfigError, match=r"storage\.url"):
        config.load(environ={"CLAWGUARD_STORAGE_URL": "mysql://x/y"})


def test_the_admin_key_file(tmp_path):
    beside = config.Config(storage=config.StorageConfig(path=str(tmp_path / "x.db")))
    assert beside.admin_key_file == tmp_path / "clawguard-admin.key"
    shared = config.Config(storage=config.StorageConfig(url="postgresql://h/d"))
    assert shared.admin_key_file == Path.cwd() / "clawguard-admin.key"
    chosen = config.Config(auth=config.AuthConfig(key_file=str(tmp_path / "k")))
    assert chosen.admin_key_file == tmp_path / "k"


@pytest.mark.parametrize(("text", "environ"), [
    ("[server]\nbogus = 1\n", {}),
    ("", {"CLAWGUARD_SERVER_BOGUS": "1"}),
])
def test_an_unknown_setting_is_named_in_plain_words(tmp_path, text, environ):
    path = tmp_path / "c.toml"
    path.write_text(text)
    with pytest.raises(errors.ConfigError) as refused:
        config.load(path, environ=environ)
    assert refused.value.message == (
        "bad setting server.bogus: clawguard has no such setting"
        " (config.example.toml lists them all)")


def test_every_notify_setting_is_in_the_readme_table():
    readme = (ROOT / "README.md").read_text()
    table = readme.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    for key in config.NotifyConfig.model_fields:
        assert f"`notify.{key}`" in table, key


def test_check_config_masks_a_webhook_secret(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[[notify.webhooks]]\nurl = "https://h.example/x"\nsecret = "s3cr3t-value"\n')
    shown = subprocess.run(
        [sys.executable, "-m", "clawguard", "check-config", "--config", str(path)],
        capture_output=True, text=True, check=True,
    ).stdout
    assert "https://h.example/x" in shown and "s3cr3t-value" not in shown
