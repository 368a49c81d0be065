"""The `clawguard` command: serve, migrate, check-config, keys, and the audit tools.

Commands that work on the database directly (migrate, keys, audit verify and
export), SQLite or PostgreSQL alike, need no running daemon, so the first key can
be made before it runs. The admin commands over HTTP (budgets, approvals, audit
tail, spend, preflight) live in remote.py.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import sys
import time
from collections.abc import Callable, Sequence

from clawguard import __version__
from clawguard.cli import remote
from clawguard.core import audit, errors, ledger, principals, records
from clawguard.runtime import config, logs
from clawguard.store import engines

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def _serve(args: argparse.Namespace, cfg: config.Config) -> int:
    # Imported here: the admin commands need no aiohttp server, and scripts run them often.
    from clawguard.runtime import server

    if args.create:  # the operator says so: a new, empty database where one was lost
        engines.migrate(cfg.storage, create=True)
    asyncio.run(server.serve(cfg))
    return EXIT_OK


def _migrate(args: argparse.Namespace, cfg: config.Config) -> int:
    applied = engines.migrate(cfg.storage)
    print(f"applied migrations: {applied or 'none (up to date)'}")
    return EXIT_OK


def _check_config(args: argparse.Namespace, cfg: config.Config) -> int:
    print(cfg.model_dump_json(indent=2))
    return EXIT_OK


def _audit_verify(args: argparse.Namespace, cfg: config.Config) -> int:
    expect = None
    if args.head:
        # SEQ:HASH, or the JSON that GET /api/governance/audit/head answers, saved as it came.
        problem = ("--head takes SEQ:HASH, or the JSON {\"seq\": N, \"hash\": \"...\"} that"
                   " GET /api/governance/audit/head answers")
        seq, digest = "", ""
        if args.head.lstrip().startswith("{"):
            try:
                saved = json.loads(args.head)
            except ValueError:
                raise errors.InvalidInput(problem) from None
            if isinstance(saved, dict) and type(saved.get("seq")) is int:
                seq, digest = str(saved["seq"]), str(saved.get("hash"))
        else:
            seq, _, digest = args.head.strip().partition(":")
        if not (seq.isascii() and seq.isdigit() and len(digest) == 64):
            raise errors.InvalidInput(problem)
        expect = (int(seq), digest)
    verdict = audit.verify(engines.audit_chain(cfg.storage, args.db), expect)
    if verdict.ok:
        head = f", head {verdict.head[0]}:{verdict.head[1]}" if verdict.head else ""
        print(f"audit chain ok: {verdict.checked} rows checked{head}")
        return EXIT_OK
    print(f"audit chain BROKEN at row {verdict.seq}: {verdict.problem}"
          f" ({verdict.checked} rows before it are intact)")
    return EXIT_FAILED


def _audit_export(args: argparse.Namespace, cfg: config.Config) -> int:
    try:
        for row in engines.audit_chain(cfg.storage, args.db):
            entry = records.AuditEntry.from_stored(
                row.seq, row.event_type, row.action, row.agent_id, row.details_json,
                row.created_at, row.prev_hash, row.hash,
            )
            print(json.dumps(entry.to_json(), sort_keys=True))
        sys.stdout.flush()  # here, so a reader gone before the last block is caught below
    except BrokenPipeError:
        # `audit export | head`: the reader has had enough, which is not an error. Python
        # would flush stdout again at exit and fail there, so point it at /dev/null.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return EXIT_OK


def _ledger_verify(args: argparse.Namespace, cfg: config.Config) -> int:
    verdict = ledger.verify(*engines.ledger(cfg.storage, args.db))
    points = [json.loads(row.details_json) for row in engines.audit_chain(cfg.storage, args.db)
              if row.action == ledger.CHECKPOINT]
    spends = engines.ledger_rows(cfg.storage, args.db)
    problems, covered = ledger.verify_checkpoints(spends, points)
    problems = verdict.problems + problems
    for problem in problems:
        print(f"ledger BROKEN: {problem}")
    if problems:
        return EXIT_FAILED
    newer = sum(1 for row in spends if row[0] > covered)
    print(f"ledger ok: {verdict.budgets} budgets, each spent equal to its charges;"
          f" spends up to {covered} match {len(points)} checkpoints ({newer} newer, not yet"
          " checkpointed)")
    return EXIT_OK


_DURATION = re.compile(r"([0-9]{1,9})(ms|s|m|h|d|w)")
_DURATION_MS = {"ms": 1, "s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000,
                "w": 604_800_000}


def duration_ms(text: str) -> int:
    """`90s`, `15m`, `12h`, `30d`, `2w` (or `500ms`) as milliseconds, more than zero."""
    match = _DURATION.fullmatch(text.strip())
    if match is None or int(match[1]) == 0:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a duration such as 90s, 15m, 12h, 30d or 2w")
    return int(match[1]) * _DURATION_MS[match[2]]


def _listed(text: str | None) -> frozenset[str] | None:
    return None if text is None else frozenset(
        item.strip() for item in text.split(",") if item.strip())


def _keys_create(args: argparse.Namespace, cfg: config.Config) -> int:
    expires_at = None
    if args.expires_in is not None:
        expires_at = time.time_ns() // 1_000_000 + args.expires_in
    principal = principals.make(args.role, args.name, _listed(args.leads), _listed(args.groups),
                                expires_at)
    key = principals.new_key()
    keys_admin = engines.key_admin(cfg.storage, args.db)
    try:
        keys_admin.create(principal, principals.hash_key(key))
    finally:
        keys_admin.close()
    print(f"created {principal.role} key {principal.key_id} ({principal.name});"
          " it is shown only now:", file=sys.stderr)
    print(key)
    return EXIT_OK


def _keys_list(args: argparse.Namespace, cfg: config.Config) -> int:
    keys_admin = engines.key_admin(cfg.storage, args.db)
    try:
        keys = keys_admin.list()
    finally:
        keys_admin.close()
    if args.json:
        print(json.dumps(keys, indent=2))
        return EXIT_OK
    print(f"{'ID':<18} {'ROLE':<9} {'STATE':<8} {'NAME':<20} LEADS")
    now = time.time_ns() // 1_000_000
    for key in keys:
        expired = key["expiresAt"] is not None and key["expiresAt"] <= now
        state = "revoked" if key["revokedAt"] else "expired" if expired else "active"
        leads = ",".join(key["leads"]) if key["leads"] is not None else "*"
        print(f"{key['id']:<18} {key['role']:<9} {state:<8} {key['name']:<20} {leads}")
    return EXIT_OK


def _keys_revoke(args: argparse.Namespace, cfg: config.Config) -> int:
    keys_admin = engines.key_admin(cfg.storage, args.db)
    try:
        keys_admin.revoke(args.key_id)
    except (errors.NotFound, errors.Conflict) as exc:
        print(f"clawguard: {exc.message}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        keys_admin.close()
    print(f"revoked {args.key_id}; a running daemon refuses it within auth.cache_ms")
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

    serve = add(commands, "serve", "run the daemon", _serve)
    serve.add_argument("--create", action="store_true",
                       help="make an empty database even where one existed and is now missing")
    add(commands, "migrate", "apply pending database migrations and exit", _migrate)
    add(commands, "check-config", "validate the configuration and print it", _check_config)

    audit_group = commands.add_parser("audit", help="verify, export or tail the audit log")
    audit_commands = audit_group.add_subparsers(dest="audit_command", required=True)
    verify = add(audit_commands, "verify", "walk the hash chain; exit 1 naming the first bad row",
                 _audit_verify)
    verify.add_argument("--db", help="database file or url (default: the config's)")
    verify.add_argument("--head", help="SEQ:HASH, or the JSON of GET /api/governance/audit/head,"
                        " saved earlier")
    export = add(audit_commands, "export", "write every audit row as JSON lines", _audit_export)
    export.add_argument("--db", help="database file or url (default: the config's)")
    remote.add_audit_tail(audit_commands, add)

    ledger_group = commands.add_parser("ledger", help="check the spend ledger (no daemon)")
    ledger_commands = ledger_group.add_subparsers(dest="ledger_command", required=True)
    ledger_check = add(ledger_commands, "verify", "every budget's spent equals the sum of its"
                       " charges, and every charge its spend's cost; exit 1 naming each"
                       " that does not", _ledger_verify)
    ledger_check.add_argument("--db", help="database file or url (default: the config's)")

    keys_group = commands.add_parser("keys", help="make, list and revoke API keys (no daemon)")
    keys_commands = keys_group.add_subparsers(dest="keys_command", required=True)
    create = add(keys_commands, "create", "make a key and print it once", _keys_create)
    create.add_argument("--role", required=True, choices=principals.ROLES)
    create.add_argument("--name", help="who holds it (default: the role)")
    create.add_argument("--leads", help="leader only: the agent ids it may decide for, a,b,c")
    create.add_argument("--groups", help="leader only: the approval groups it answers for, a,b")
    create.add_argument("--expires-in", type=duration_ms, metavar="DURATION",
                        help="refuse the key after this long: 90s, 15m, 12h, 30d, 2w")
    listing = add(keys_commands, "list", "list keys (never their values)", _keys_list)
    listing.add_argument("--json", action="store_true", help="JSON for scripts")
    revoke = add(keys_commands, "revoke", "revoke a key by its id", _keys_revoke)
    revoke.add_argument("key_id", metavar="ID")
    for command in (create, listing, revoke):
        command.add_argument("--db", help="database file or url (default: the config's)")
    remote.add_commands(commands, add)
    remote.add_gate_commands(commands, add)
    remote.add_authorize_commands(commands, add)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(remote.unalias(sys.argv[1:] if argv is None else argv))
    logs.configure()
    try:
        cfg = config.load(args.config)
        logs.configure(cfg.log.level, cfg.log.format)
        run: Command = args.run
        return run(args, cfg)
    except (errors.ConfigError, errors.InvalidInput) as exc:
        print(f"clawguard: {exc.message}", file=sys.stderr)
        return EXIT_USAGE
    except errors.StoreUnavailable as exc:
        print(f"clawguard: {exc.message}", file=sys.stderr)
        return EXIT_FAILED
    except OSError as exc:  # the port is taken, the directory is not writable
        print(f"clawguard: {exc}", file=sys.stderr)
        return EXIT_FAILED
