"""The `clawguard` command: serve, migrate, check-config."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence

from clawguard import __version__, config, errors, server, sqlite


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="clawguard", description=__doc__)
    parser.add_argument("--version", action="version", version=f"clawguard {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    for name, text in (
        ("serve", "run the daemon"),
        ("migrate", "apply pending database migrations and exit"),
        ("check-config", "validate the configuration and print it"),
    ):
        command = commands.add_parser(name, help=text, description=text)
        command.add_argument("--config", help="TOML file (default: $CLAWGUARD_CONFIG, else none)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        cfg = config.load(args.config)
        if args.command == "check-config":
            print(cfg.model_dump_json(indent=2))
        elif args.command == "migrate":
            applied = sqlite.migrate_database(cfg.storage.path, cfg.storage.busy_timeout_ms)
            print(f"applied migrations: {applied or 'none (up to date)'}")
        else:
            asyncio.run(server.serve(cfg))
    except errors.ConfigError as exc:
        print(f"clawguard: {exc.message}", file=sys.stderr)
        return 2
    except errors.StoreUnavailable as exc:
        print(f"clawguard: {exc.message}", file=sys.stderr)
        return 1
    except OSError as exc:  # the port is taken, the directory is not writable
        print(f"clawguard: {exc}", file=sys.stderr)
        return 1
    return 0
