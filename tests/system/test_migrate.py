"""Migrations: applied once, recorded, a no-op the second time, shipped inside the wheel."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from clawguard.store import migrations, sqlite

ROOT = Path(__file__).resolve().parents[2]


def test_migrate_twice_is_a_no_op(db_path):
    assert sqlite.migrate_database(str(db_path)) == [
        m.version for m in migrations.available("sqlite")
    ]
    assert sqlite.migrate_database(str(db_path)) == []
    conn = sqlite3.connect(db_path)
    versions = [v for (v,) in conn.execute("SELECT version FROM schema_migrations")]
    conn.close()
    assert versions == [m.version for m in migrations.available("sqlite")] and versions[0] == 1


def test_migration_files_are_numbered_in_sequence():
    # Numbers are handed out per branch ahead of merging; merged, they leave no gap. Each is
    # applied by its own row in schema_migrations, never by "above the highest".
    versions = [m.version for m in migrations.available("sqlite")]
    assert versions == list(range(1, len(versions) + 1))
    assert [(m.version, m.name) for m in migrations.available("sqlite")] == [
        (m.version, m.name) for m in migrations.available("postgres")]


def test_the_audit_table_refuses_updates_and_deletes(db_path):
    sqlite.migrate_database(str(db_path))
    conn = sqlite3.connect(db_path)
    conn.execute("INSERT INTO audit VALUES (1, 'budget', 'x', NULL, '{}', 0, '', '')")
    for statement in ("UPDATE audit SET action = 'y'", "DELETE FROM audit"):
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            conn.execute(statement)
    conn.close()


def test_migrate_command(tmp_path):
    db = tmp_path / "cli.db"
    run = [sys.executable, "-m", "clawguard", "migrate"]
    env = {"CLAWGUARD_STORAGE_PATH": str(db), "PATH": ""}
    first = subprocess.run(run, capture_output=True, text=True, env=env)
    second = subprocess.run(run, capture_output=True, text=True, env=env)
    assert first.returncode == second.returncode == 0, first.stderr
    assert "[1" in first.stdout and "up to date" in second.stdout


def test_the_wheel_carries_the_migrations_and_migrates_from_them(tmp_path):
    """Built and installed as a user would (`pip install .`), not from this checkout."""
    built = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        capture_output=True,
        text=True,
    )
    assert built.returncode == 0, built.stderr
    [wheel] = tmp_path.glob("clawguard-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    shipped = sorted(n for n in names if n.startswith("clawguard/migrations/"))
    sources = sorted(migrations.migrations_dir("sqlite").parent.glob("*/*.sql"))
    assert sources and shipped == [
        f"clawguard/migrations/{path.parent.name}/{path.name}" for path in sources
    ]
    # The console's static files ride along too: `pip install .` serves /console, no Node.
    console = sorted(n for n in names if n.startswith("clawguard/console/"))
    assert console == ["clawguard/console/__init__.py", "clawguard/console/app.css",
                       "clawguard/console/app.js", "clawguard/console/index.html"]
    # Installed into its own directory, placed ahead of this checkout on the path.
    python = sys.executable
    target = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--target",
            str(target),
            str(wheel),
        ],
        check=True,
        capture_output=True,
    )
    db = tmp_path / "wheel.db"
    migrated = subprocess.run(
        [
            python,
            "-c",
            "import sys; from clawguard.cli import local; sys.exit(local.main(['migrate']))",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(target), "CLAWGUARD_STORAGE_PATH": str(db)},
    )
    assert migrated.returncode == 0, migrated.stderr
    check = subprocess.run(
        [python, "-c", "import clawguard.store.migrations as m; print(m.migrations_dir('sqlite'))"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(target)},
    )
    assert check.stdout.strip() == str(target / "clawguard" / "migrations" / "sqlite")
    served = subprocess.run(
        [python, "-c",
         "from clawguard.http import console; print(len(console._content('app.js')))"],
        cwd=tmp_path, capture_output=True, text=True, env={"PYTHONPATH": str(target)},
    )
    assert served.returncode == 0 and int(served.stdout) > 1000, served.stderr
