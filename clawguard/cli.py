"""The `clawguard` command: serve, migrate, check-config, and the audit tools.

Commands that work on the database file directly (migrate, audit verify and
export) need no running daemon.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from collections.abc import Callable, Sequence

from clawguard import __version__, audit, config, errors, server, sqlite

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def _serve(args: argparse.Namespace, cfg: config.Config) -> int:
    asyncio.run(server.serve(cfg))
    return EXIT_OK


def _migrate(args: argparse.Namespace, cfg: config.Config) -> int:
    applied = sqlite.migrate_database(cfg.storage.path, cfg.storage.busy_timeout_ms)
    print(f"applied migrations: {applied or 'none (up to date)'}")
    return EXIT_OK


def _check_config(args: argparse.Namespace, cfg: config.Config) -> int:
    print(cfg.model_dump_json(indent=2))
    return EXIT_OK


def _audit_verify(args: argparse.Namespace, cfg: config.Config) -> int:
    expect = None
    if args.head:
        seq, _, digest = args.head.partition(":")
        if not seq.isdigit() or len(digest) != 64:
            raise errors.InvalidInput("--head takes SEQ:HASH, as GET /api/governance/audit/head")
        expect = (int(seq), digest)
    verdict = audit.verify(sqlite.audit_chain(args.db or cfg.storage.path), expect)
    if verdict.ok:
        head = f", head {verdict.head[0]}:{verdict.head[1]}" if verdict.head else ""
        print(f"audit chain ok: {verdict.checked} rows checked{head}")
        return EXIT_OK
    print(f"audit chain BROKEN at row {verdict.seq}: {verdict.problem}"
          f" ({verdict.checked} rows before it are intact)")
    return EXIT_FAILED


def _audit_export(args: argparse.Namespace, cfg: config.Config) -> int:
    for row in sqlite.audit_chain(args.db or cfg.storage.path):
        print(json.dumps({
            "id": row.seq, "eventType": row.event_type, "action": row.action,
            "agentId": row.agent_id, "details": json.loads(row.details_json),
            "createdAt": row.created_at, "prevHash": row.prev_hash, "hash": row.hash,
        }, sort_keys=True))
    return EXIT_OK


Command = Callable[[argparse.Namespace, config.Config], int]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="clawguard", description=__doc__)
    parser.add_argument("--version", action="version", version=f"clawguard {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    def add(group: argparse._SubParsersAction[argparse.ArgumentParser], name: str, text: str,
            run: Command) -> argparse.ArgumentParser:
        command = group.add_parser(name, help=text, description=text)
        command.add_argument("--config", help="TOML file (default: $CLAWGUARD_CONFIG, else none)")
        command.set_defaults(run=run)
        return command

    add(commands, "serve", "run the daemon", _serve)
    add(commands, "migrate", "apply pending database migrations and exit", _migrate)
    add(commands, "check-config", "validate the configuration and print it", _check_config)

    audit_group = commands.add_parser("audit", help="verify or export the audit log")
    audit_commands = audit_group.add_subparsers(dest="audit_command", required=True)
    verify = add(audit_commands, "verify", "walk the hash chain; exit 1 naming the first bad row",
                 _audit_verify)
    verify.add_argument("--db", help="database file (default: storage.path)")
    verify.add_argument("--head", help="SEQ:HASH saved earlier from GET /api/governance/audit/head")
    export = add(audit_commands, "export", "write every audit row as JSON lines", _audit_export)
    export.add_argument("--db", help="database file (default: storage.path)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        run: Command = args.run
        return run(args, config.load(args.config))
    except (errors.ConfigError, errors.InvalidInput) as exc:
        print(f"clawguard: {exc.message}", file=sys.stderr)
        return EXIT_USAGE
    except errors.StoreUnavailable as exc:
        print(f"clawguard: {exc.message}", file=sys.stderr)
        return EXIT_FAILED
    except OSError as exc:  # the port is taken, the directory is not writable
        print(f"clawguard: {exc}", file=sys.stderr)
        return EXIT_FAILED
