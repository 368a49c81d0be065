"""The admin command line over HTTP: budgets, approvals, audit tail, spend and preflight.

These commands talk to a running daemon through clawguard.client: `--url`
(else $CLAWGUARD_URL, else the configured server address) and `--key` or
`--key-file` (else $CLAWGUARD_API_KEY). They print tables for people and,
with `--json`, the daemon's JSON for scripts.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from clawguard import client
from clawguard.client import errors as client_errors
from clawguard.client import records
from clawguard.runtime import config

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_STOPPED, EXIT_UNREACHABLE, EXIT_REFUSED = 0, 1, 2, 3, 4, 5

EXIT_CODES = """\
exit codes:
  0  done
  1  the daemon said no: unknown id or budget (404), conflict (409), refused (422),
     or failed (5xx)
  2  usage: bad arguments, or a request the daemon found malformed (400)
  3  the kill-switch: the spend was recorded and stopped its scope, or the
     preflight refused
  4  no daemon to use: unreachable, or its store unavailable (503)
  5  the key: none given, or unknown, revoked or expired (401), or its role may
     not do this (403)
"""
NO_KEY_HINT = ("no API key was given: pass --key-file PATH (e.g. the first-start"
               " clawguard-admin.key) or set CLAWGUARD_API_KEY")

Command = Callable[[argparse.Namespace, config.Config], int]
Run = Callable[[argparse.Namespace, client.Client], int]
Adder = Callable[[Any, str, str, Command], argparse.ArgumentParser]

TAIL_PAGE = 1000  # the daemon's most audit rows per read


def exit_code(exc: client_errors.ClawguardError) -> int:
    if isinstance(exc, client_errors.BudgetPaused):
        return EXIT_STOPPED
    if isinstance(exc, client_errors.Unauthorized | client_errors.Forbidden):
        return EXIT_REFUSED
    if isinstance(exc, client_errors.Unavailable):
        return EXIT_UNREACHABLE
    if isinstance(exc, client_errors.InvalidRequest):
        return EXIT_USAGE
    return EXIT_FAILED


# --- how to reach the daemon ------------------------------------------------------------


def _url(args: argparse.Namespace, cfg: config.Config) -> str:
    if args.url:
        return str(args.url)
    if os.environ.get(client.URL_ENV):
        return os.environ[client.URL_ENV]
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(cfg.server.host,
                                                                      cfg.server.host)
    host = f"[{host}]" if ":" in host else host
    return f"http://{host}:{cfg.server.port or 18790}"


def _key(args: argparse.Namespace) -> str | None:
    if args.key:
        return str(args.key)
    if args.key_file:
        with open(args.key_file, encoding="utf-8") as file:
            key = file.read().strip()
        if not key:
            raise ValueError(f"the --key-file {args.key_file} is empty")
        return key
    return os.environ.get(client.KEY_ENV) or None


def _over_http(run: Run) -> Command:
    def command(args: argparse.Namespace, cfg: config.Config) -> int:
        key = None
        try:
            key = _key(args)
            with client.Client(_url(args, cfg), key, timeout=args.timeout) as api:
                return run(args, api)
        except client_errors.ClawguardError as exc:
            print(f"clawguard: {exc}", file=sys.stderr)
            if isinstance(exc, client_errors.Unauthorized) and key is None:
                print(f"clawguard: {NO_KEY_HINT}", file=sys.stderr)
            return exit_code(exc)
        except BrokenPipeError:  # `clawguard audit tail -f | head`: the reader has had enough
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return EXIT_OK
        except (ValueError, OSError) as exc:  # a bad --url or amount, an unreadable --key-file
            print(f"clawguard: {exc}", file=sys.stderr)
            return EXIT_USAGE

    return command


# --- output ---------------------------------------------------------------------------------


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2))


def _table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> None:
    lines = [list(header), *map(list, rows)]
    widths = [max(len(line[n]) for line in lines) for n in range(len(header))]
    for line in lines:
        print("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True))
              .rstrip())


def _dollars(micros: int) -> str:
    """$5.00, $0.004: whole cents always shown, finer digits only when there are any."""
    text = f"{Decimal(micros).scaleb(-6):f}"
    whole, _, fraction = text.partition(".")
    return f"${whole}.{fraction.rstrip('0').ljust(2, '0')}"


def _when(ms: int | None) -> str:
    if ms is None:
        return "-"
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _used(spent_micros: int, limit_cents: int) -> str:
    return f"{spent_micros * 100 // (limit_cents * 10_000)}%" if limit_cents else "-"


BUDGET_HEADER = ("SCOPE", "SCOPE ID", "MODE", "STATUS", "SPENT", "LIMIT", "USED")


def _budget_row(budget: records.Budget) -> tuple[str, ...]:
    return (budget.scope, budget.scope_id, budget.mode, budget.status,
            _dollars(budget.spent_usd_micros), _dollars(budget.limit_usd_cents * 10_000),
            _used(budget.spent_usd_micros, budget.limit_usd_cents))


def _scope_rows(scopes: Iterable[records.ScopeState]) -> list[tuple[str, ...]]:
    return [(s.scope, s.scope_id, s.mode, s.status, _dollars(s.spent_usd_micros),
             _dollars(s.limit_usd_cents * 10_000), _used(s.spent_usd_micros, s.limit_usd_cents),
             s.crossed) for s in scopes]


APPROVAL_HEADER = ("ID", "AGENT", "TOOL", "STATUS", "CREATED", "EXPIRES")


def _approval_row(approval: records.Approval) -> tuple[str, ...]:
    return (approval.id, approval.agent_id, approval.tool_name, approval.status,
            _when(approval.created_at), _when(approval.expires_at))


def _indented(label: str, text: str) -> str:
    """`text` in full under its row, every line of it indented (a command is never cut)."""
    first, *rest = text.splitlines() or [""]
    pad = " " * (len(label) + 6)
    return "\n".join([f"    {label}: {first}", *(pad + line for line in rest)])


def _approvals_table(approvals: Sequence[records.Approval]) -> None:
    """One row per request, then its reason and arguments in full, indented under it."""
    lines = [APPROVAL_HEADER, *map(_approval_row, approvals)]
    widths = [max(len(line[n]) for line in lines) for n in range(len(APPROVAL_HEADER))]

    def row(cells: Sequence[str]) -> str:
        return "  ".join(cell.ljust(width) for cell, width in zip(cells, widths, strict=True)
                         ).rstrip()

    print(row(APPROVAL_HEADER))
    for approval, cells in zip(approvals, lines[1:], strict=True):
        print(row(cells))
        if approval.reason:
            print(_indented("reason", approval.reason))
        if approval.args_summary:
            print(_indented("args", approval.args_summary))


def _args_text(summary: str) -> str:
    """The arguments as indented JSON when they parse (the daemon stores compact JSON)."""
    try:
        return json.dumps(json.loads(summary), indent=2, ensure_ascii=False)
    except ValueError:
        return summary


GRANT_HEADER = ("ID", "AGENT", "TOOL", "SCOPE", "APPROVAL", "CREATED", "EXPIRES", "REVOKED")


def _grant_row(grant: records.Grant) -> tuple[str, ...]:
    revoked = "-" if grant.revoked_at is None else f"{_when(grant.revoked_at)} by " \
        f"{grant.revoked_by or '?'}"
    return (grant.id, grant.agent_id, grant.tool_name, grant.grant_scope, grant.approval_id,
            _when(grant.created_at), _when(grant.expires_at), revoked)


# --- runs and quotas -------------------------------------------------------------------------

RUN_HEADER = ("ID", "AGENT", "STATUS", "DEPTH", "PARENT", "STARTED", "LEASE ENDS")
RUN_STATUSES = ("running", "ended", "expired", "tripped")


def _run_row(run: records.Run) -> tuple[str, ...]:
    return (run.id, run.agent_id, run.status, str(run.depth), run.parent_run_id or "-",
            _when(run.started_at), _when(run.lease_expires_at))


def _runs_list(args: argparse.Namespace, api: client.Client) -> int:
    rows = api.list_runs(status=args.status, agent_id=args.agent, limit=args.limit)
    if args.json:
        _print_json({"runs": [run.to_json() for run in rows]})
    else:
        _table(RUN_HEADER, map(_run_row, rows))
    return EXIT_OK


def _runs_show(args: argparse.Namespace, api: client.Client) -> int:
    run = api.get_run(args.run_id)
    if args.json:
        _print_json({"run": run.to_json()})
    else:
        _table(("FIELD", "VALUE"), [(name, "-" if value is None else str(value))
                                    for name, value in run.to_json().items()])
    return EXIT_OK


def _holds_show(args: argparse.Namespace, api: client.Client) -> int:
    hold = api.get_hold(args.hold_id)
    if args.json:
        _print_json({"hold": hold.to_json()})
    else:
        _table(("FIELD", "VALUE"), [(name, "-" if value is None else str(value))
                                    for name, value in hold.to_json().items()
                                    if name != "scopes"])
        _table(("SCOPE", "ID", "STATUS", "SPENT", "HELD", "LIMIT"), [
            (s.scope, s.scope_id, s.status, _dollars(s.spent_usd_micros),
             _dollars(s.held_usd_micros), _dollars(s.limit_usd_cents * 10_000))
            for s in hold.scopes])
    return EXIT_OK


def _print_quota(quota: records.Quota, as_json: bool) -> None:
    if as_json:
        _print_json(quota.to_json())
        return
    print(f"plan: {quota.plan}")
    _table(("KEY", "PLAN", "OVERRIDE", "EFFECTIVE"), [
        (key, str(quota.limits[key]), str(quota.overrides.get(key, "-")),
         str(quota.effective[key])) for key in quota.limits
    ])


def _quota_show(args: argparse.Namespace, api: client.Client) -> int:
    _print_quota(api.quota(args.tenant_id), args.json)
    return EXIT_OK


def _override(text: str) -> tuple[str, int | None]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"{text!r} is not KEY=VALUE (VALUE a whole number,"
                                         " or 'default' to remove the override)")
    if value == "default":
        return key, None
    try:
        return key, int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number") from None


def _quota_set(args: argparse.Namespace, api: client.Client) -> int:
    _print_quota(api.set_quota(args.tenant_id, dict(args.overrides)), args.json)
    return EXIT_OK


# --- budgets ----------------------------------------------------------------------------------


def _budgets_list(args: argparse.Namespace, api: client.Client) -> int:
    budgets = api.list_budgets(scope=args.scope, status=args.status)
    if args.json:
        _print_json({"budgets": [b.to_json() for b in budgets]})
    else:
        _table(BUDGET_HEADER, map(_budget_row, budgets))
    return EXIT_OK


def _budgets_set(args: argparse.Namespace, api: client.Client) -> int:
    budget = api.set_budget(args.scope, args.scope_id, args.limit, mode=args.mode)
    if args.json:
        _print_json({"budget": budget.to_json()})
    else:
        _table(BUDGET_HEADER, [_budget_row(budget)])
    return EXIT_OK


def _budgets_delete(args: argparse.Namespace, api: client.Client) -> int:
    api.delete_budget(args.scope, args.scope_id)
    if not args.json:  # the daemon answers 204: there is no JSON to print
        print(f"deleted the budget of {args.scope} {args.scope_id}; it is uncapped now")
    return EXIT_OK


def _budgets_resume(args: argparse.Namespace, api: client.Client) -> int:
    resumed = api.resume_budget(args.scope, args.scope_id, grace_usd_cents=args.grace)
    if args.json:
        _print_json(resumed.to_json())
        return EXIT_OK
    _table(BUDGET_HEADER, [_budget_row(resumed.budget)])
    if resumed.will_repause:
        print("note: spent is still at the limit, so the next spend pauses it again"
              " (give --grace CENTS, or raise the limit)")
    return EXIT_OK


# --- approvals --------------------------------------------------------------------------------


def _approvals_list(args: argparse.Namespace, api: client.Client) -> int:
    pending = api.pending_approvals(every=args.all, reviewer_me=args.mine)  # every page
    if args.json:
        _print_json({"ok": True, "approvals": [a.to_json() for a in pending],
                     "nextCursor": None})
    else:
        _approvals_table(pending)
    return EXIT_OK


def _approvals_show(args: argparse.Namespace, api: client.Client) -> int:
    approval = api.get_approval(args.approval_id)
    if args.json:
        _print_json({"ok": True, "approval": approval.to_json()})
        return EXIT_OK
    fields = approval.to_json()
    times = {"createdAt", "expiresAt", "resolvedAt"}
    width = max(map(len, fields))
    for name, value in fields.items():
        if name == "argsSummary" and isinstance(value, str):
            text = _args_text(value)
        elif name in times and (value is None or isinstance(value, int)):
            text = _when(value) if value is None else f"{_when(value)} ({value})"
        elif isinstance(value, str):
            text = value
        else:
            text = "-" if value is None else json.dumps(value, ensure_ascii=False)
        first, *rest = text.splitlines() or [""]
        print(f"{name.ljust(width)}  {first}")
        for line in rest:
            print(" " * (width + 2) + line)
    return EXIT_OK


def _grant_scope(args: argparse.Namespace) -> records.GrantScope | None:
    """--scope; for allow_always without it, ask a person at a terminal, else say the default."""
    if args.scope is not None or args.decision != "allow_always":
        scope: records.GrantScope | None = args.scope
        return scope
    if sys.stdin.isatty():
        while True:
            print("allow always for the tool with any arguments, or for these arguments only?"
                  " [tool/args] ", end="", file=sys.stderr, flush=True)
            answer = sys.stdin.readline()
            if not answer:  # end of input: nobody chose
                raise SystemExit(EXIT_USAGE)
            for choice in records.GRANT_SCOPES:
                if answer.strip().lower() == choice:
                    return choice
    print("clawguard: allow_always grants the tool with any arguments (--scope tool);"
          " pass --scope args to grant these arguments only", file=sys.stderr)
    return "tool"


def _approvals_resolve(args: argparse.Namespace, api: client.Client) -> int:
    approval = api.resolve_approval(args.approval_id, args.decision, resolved_by=args.by,
                                    grant_scope=_grant_scope(args))
    if args.json:
        _print_json({"ok": True, "approval": approval.to_json()})
    else:
        _approvals_table([approval])
    return EXIT_OK


def _stages_lines(approval: records.Approval) -> None:
    """Under an approval with stages: each stage, its gates' votes against their counts."""
    for stage in approval.stages or ():
        gates = ", ".join(
            f"{gate.group or 'any leader'} {len(gate.votes)}/{gate.count}"
            + (f" ({', '.join(f'{v.key_name}: {v.decision}' for v in gate.votes)})"
               if gate.votes else "")
            for gate in stage.gates)
        print(f"  stage {stage.name}: {stage.status}; {gates}")
    if approval.waiver is not None:
        print(f"  waived by {approval.waiver.key_name}: {approval.waiver.reason}")


def _approvals_vote(args: argparse.Namespace, api: client.Client) -> int:
    return _decided(args, api.vote_approval(args.approval_id, args.decision,
                                            comments=args.comments, conditions=args.conditions,
                                            resolved_by=args.by))


def _approvals_waive(args: argparse.Namespace, api: client.Client) -> int:
    return _decided(args, api.waive_approval(args.approval_id, args.reason))


def _decided(args: argparse.Namespace, approval: records.Approval) -> int:
    """An approval after a vote or a waiver: JSON, or its row and its stages' lines."""
    if args.json:
        _print_json({"ok": True, "approval": approval.to_json()})
    else:
        _approvals_table([approval])
        _stages_lines(approval)
    return EXIT_OK


def _approvals_grants(args: argparse.Namespace, api: client.Client) -> int:
    grants = api.grants(agent_id=args.agent)
    if args.json:
        _print_json({"ok": True, "grants": [g.to_json() for g in grants]})
    else:
        _table(GRANT_HEADER, map(_grant_row, grants))
    return EXIT_OK


def _approvals_revoke(args: argparse.Namespace, api: client.Client) -> int:
    grant = api.revoke_grant(args.grant_id, revoked_by=args.by)
    if args.json:
        _print_json({"ok": True, "grant": grant.to_json()})
    else:
        _table(GRANT_HEADER, [_grant_row(grant)])
    return EXIT_OK


# --- audit tail -------------------------------------------------------------------------------


def _print_audit(row: records.AuditEntry, as_json: bool) -> None:
    if as_json:
        print(json.dumps(row.to_json(), sort_keys=True), flush=True)
        return
    details = json.dumps(row.details, sort_keys=True, separators=(",", ":"))
    print(f"{_when(row.created_at)}  {row.id:>6}  {row.event_type:<12}  {row.action:<22}  "
          f"{row.agent_id or '-':<16}  {details}".rstrip(), flush=True)


def _audit_tail(args: argparse.Namespace, api: client.Client) -> int:
    """The last rows oldest first; with --follow, then every new row as it lands."""
    rows = api.audit(agent_id=args.agent, event_type=args.event_type, limit=args.limit)
    for row in reversed(rows):
        _print_audit(row, args.json)
    if not args.follow:
        return EXIT_OK
    last_id = rows[0].id if rows else 0
    since = rows[0].created_at if rows else None
    try:
        while True:
            time.sleep(args.interval)
            rows = api.audit(agent_id=args.agent, event_type=args.event_type, since=since,
                             limit=TAIL_PAGE)
            new = [row for row in rows if row.id > last_id]
            if len(rows) == TAIL_PAGE and len(new) == len(rows):  # the last row seen fell off
                print(f"clawguard: over {TAIL_PAGE} rows landed between two reads;"
                      " some were skipped (shorten --interval)", file=sys.stderr)
            for row in reversed(new):
                _print_audit(row, args.json)
            if new:
                last_id, since = new[0].id, new[0].created_at
    except KeyboardInterrupt:
        return EXIT_OK


# --- spend and preflight, for scripts ----------------------------------------------------------


def _scopes(args: argparse.Namespace) -> dict[str, str | None]:
    scopes = {"agent_id": args.agent, "mission_id": args.mission, "team_id": args.team,
              "tenant_id": args.tenant}
    if not any(scopes.values()):
        raise ValueError("name at least one of --agent, --mission, --team, --tenant")
    return scopes


SCOPE_HEADER = (*BUDGET_HEADER, "CROSSED")


def _spend(args: argparse.Namespace, api: client.Client) -> int:
    outcome = api.spend(args.cents, **_scopes(args), idempotency_key=args.idempotency_key,
                        task_id=args.task, model=args.model, input_tokens=args.input_tokens,
                        output_tokens=args.output_tokens)
    if args.json:
        _print_json(outcome.to_json())
    else:
        replay = " (a replay of that key: nothing charged again)" if outcome.spend.duplicate \
            else ""
        print(f"spend {outcome.spend.id}: {_dollars(outcome.spend.cost_usd_micros)}{replay}")
        if outcome.scopes:
            _table(SCOPE_HEADER, _scope_rows(outcome.scopes))
    if outcome.stop:
        print(f"clawguard: recorded, and the kill-switch fired: {outcome.stop_reason}",
              file=sys.stderr)
        return EXIT_STOPPED
    return EXIT_OK


def _spend_summary(args: argparse.Namespace, api: client.Client) -> int:
    groups = api.spend_summary(args.by, since=args.since, until=args.until)
    if args.json:
        _print_json([group.to_json() for group in groups])
        return EXIT_OK
    _table((args.by.upper(), "SPENT", "SPENDS", "INPUT TOKENS", "OUTPUT TOKENS"), [
        ("(none)" if g.key is None else g.key, _dollars(g.spent_usd_micros), str(g.spends),
         str(g.input_tokens), str(g.output_tokens)) for g in groups
    ])
    return EXIT_OK


def _preflight(args: argparse.Namespace, api: client.Client) -> int:
    checked = api.preflight(**_scopes(args))
    if args.json:
        _print_json(checked.to_json())
    else:
        print("allowed" if checked.allowed else f"refused: {checked.reason}")
        if checked.scopes:
            _table(SCOPE_HEADER, _scope_rows(checked.scopes))
    if checked.allowed:
        return EXIT_OK
    return EXIT_UNREACHABLE if checked.reason == "store_unavailable" else EXIT_STOPPED


# --- the parsers -----------------------------------------------------------------------------


def _cents(text: str) -> Decimal:
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise argparse.ArgumentTypeError(f"not a number of cents: {text!r}") from None
    if not value.is_finite():
        raise argparse.ArgumentTypeError(f"not a number of cents: {text!r}")
    return value


def _positive(kind: Callable[[str], Any]) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be above 0: {text!r}")
        return value

    parse.__name__ = kind.__name__
    return parse


def _limit_cents(text: str) -> int:
    """A budget limit: whole US cents, above 0 (the daemon refuses a fraction too)."""
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise argparse.ArgumentTypeError(f"not a number of cents: {text!r}") from None
    if not value.is_finite() or value != value.to_integral_value():
        raise argparse.ArgumentTypeError(
            f"limits are whole US cents, not {text!r} (500 is $5.00)")
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be above 0: {text!r}")
    return int(value)


def _http(add: Adder, group: Any, name: str, text: str, run: Run) -> argparse.ArgumentParser:
    command = add(group, name, text, _over_http(run))
    command.formatter_class = argparse.RawDescriptionHelpFormatter
    command.epilog = EXIT_CODES
    command.add_argument("--url", help="the daemon (default: $CLAWGUARD_URL, else the"
                         " configured server.host and server.port)")
    key = command.add_mutually_exclusive_group()
    key.add_argument("--key", help="API key (default: $CLAWGUARD_API_KEY; prefer --key-file or"
                     " the variable: arguments show in ps)")
    key.add_argument("--key-file", help="read the API key from this file, e.g. the first-start"
                     " clawguard-admin.key")
    command.add_argument("--json", action="store_true", help="print the daemon's JSON")
    command.add_argument("--timeout", type=_positive(float), default=10.0,
                         help="seconds to wait for each answer (default 10)")
    return command


def _scope_arguments(command: argparse.ArgumentParser) -> None:
    command.add_argument("scope", choices=records.SCOPES)
    command.add_argument("scope_id", metavar="SCOPE_ID")


def _scope_options(command: argparse.ArgumentParser) -> None:
    for name in ("agent", "mission", "team", "tenant"):
        command.add_argument(f"--{name}", metavar="ID", help=f"the {name} id")


# Two-word commands that argparse cannot nest, as the one-word name they are parsed by.
SUBCOMMAND_ALIASES = {("spend", "summary"): "spend-summary"}


def unalias(argv: Sequence[str]) -> list[str]:
    """`spend summary ...` as `spend-summary ...`; anything else as it is."""
    words = list(argv)
    alias = SUBCOMMAND_ALIASES.get(tuple(words[:2]))  # type: ignore[arg-type]
    return [alias, *words[2:]] if alias is not None else words


def add_commands(commands: Any, add: Adder) -> None:
    """budgets, approvals, spend and preflight, under the top-level `commands`."""
    budgets = commands.add_parser("budgets", help="list, set, delete and resume budgets (HTTP)")
    budget_commands = budgets.add_subparsers(dest="budgets_command", required=True)
    listing = _http(add, budget_commands, "list", "list budgets, newest-updated first",
                    _budgets_list)
    listing.add_argument("--scope", choices=records.SCOPES)
    listing.add_argument("--status", choices=records.STATUSES)
    setting = _http(add, budget_commands, "set",
                    "create a budget or change its limit (and mode)", _budgets_set)
    _scope_arguments(setting)
    setting.add_argument("limit", metavar="LIMIT_CENTS", type=_limit_cents,
                         help="whole US cents: 500 is $5.00")
    setting.add_argument("--mode", choices=("warn", "cap"),
                         help="cap pauses at 100%%; omitted: a new budget warns, an existing"
                         " one keeps its mode")
    deleting = _http(add, budget_commands, "delete",
                     "remove a budget: the scope becomes uncapped", _budgets_delete)
    _scope_arguments(deleting)
    resuming = _http(add, budget_commands, "resume", "resume a paused scope", _budgets_resume)
    _scope_arguments(resuming)
    resuming.add_argument("--grace", metavar="CENTS", type=_positive(int),
                          help="set the limit to spent + CENTS")

    approvals = commands.add_parser("approvals",
                                    help="pending approvals and sticky grants (HTTP)")
    approval_commands = approvals.add_subparsers(dest="approvals_command", required=True)
    listing = _http(add, approval_commands, "list",
                    "the pending queue, newest first, each request's arguments in full",
                    _approvals_list)
    listing.add_argument("--all", action="store_true",
                         help="every pending request, also those this key may not decide")
    listing.add_argument("--mine", action="store_true",
                         help="only the requests this key could vote on now (?reviewer=me)")
    showing = _http(add, approval_commands, "show", "one request, every field in full",
                    _approvals_show)
    showing.add_argument("approval_id", metavar="ID")
    resolving = _http(add, approval_commands, "resolve", "decide a pending request",
                      _approvals_resolve)
    resolving.add_argument("approval_id", metavar="ID")
    resolving.add_argument("decision", choices=records.DECISIONS)
    resolving.add_argument("--by", help="who decides, for a daemon without keys (with keys it"
                           " is always the key's name)")
    resolving.add_argument("--scope", choices=records.GRANT_SCOPES,
                           help="what allow_always grants: the tool with any arguments, or"
                           " these arguments only (asked at a terminal; else tool)")
    voting = _http(add, approval_commands, "vote",
                   "vote on an approval with stages (on one without: decide it)",
                   _approvals_vote)
    voting.add_argument("approval_id", metavar="ID")
    voting.add_argument("--decision", required=True, choices=records.VOTE_DECISIONS)
    voting.add_argument("--conditions", metavar="TEXT",
                        help="with --decision conditional (required there): what the executor"
                        " must do, returned to it as an obligation")
    voting.add_argument("--comments", metavar="TEXT", help="kept with the vote")
    voting.add_argument("--by", help="who votes, for a daemon without keys (with keys it is"
                        " always the key)")
    waiving = _http(add, approval_commands, "waive",
                    "approve an approval with stages without its votes (admin key)",
                    _approvals_waive)
    waiving.add_argument("approval_id", metavar="ID")
    waiving.add_argument("--reason", required=True, help="why: recorded with the waiver")
    granting = _http(add, approval_commands, "grants", "live sticky allow_always grants",
                     _approvals_grants)
    granting.add_argument("--agent", metavar="ID", help="only this agent's")
    revoking = _http(add, approval_commands, "revoke", "revoke a sticky grant",
                     _approvals_revoke)
    revoking.add_argument("grant_id", metavar="ID")
    revoking.add_argument("--by", help="who revokes, for a daemon without keys (with keys it"
                          " is always the key's name)")

    # `clawguard spend summary` is this command (see SUBCOMMAND_ALIASES): `spend CENTS`
    # takes a positional amount, so argparse cannot hang a subcommand under it.
    summary = _http(add, commands, "spend-summary",
                    "spend grouped by agent, mission, team, tenant or model, largest first"
                    " (also `spend summary`)", _spend_summary)
    summary.add_argument("--by", choices=("agent", "mission", "team", "tenant", "model"),
                         default="agent")
    summary.add_argument("--since", type=int, metavar="MS", help="epoch ms, inclusive")
    summary.add_argument("--until", type=int, metavar="MS", help="epoch ms, exclusive")

    runs = commands.add_parser("runs", help="list and show runs (HTTP)")
    run_commands = runs.add_subparsers(dest="runs_command", required=True)
    listing = _http(add, run_commands, "list", "runs, newest first", _runs_list)
    listing.add_argument("--status", choices=RUN_STATUSES)
    listing.add_argument("--agent", metavar="ID", help="only this agent's")
    listing.add_argument("--limit", type=_positive(int), help="at most this many (1..500)")
    showing = _http(add, run_commands, "show", "one run", _runs_show)
    showing.add_argument("run_id", metavar="ID")

    holds = commands.add_parser("holds", help="show a hold (HTTP)")
    hold_commands = holds.add_subparsers(dest="holds_command", required=True)
    showing = _http(add, hold_commands, "show", "one hold and the scopes it reserved on",
                    _holds_show)
    showing.add_argument("hold_id", metavar="ID")

    quotas = commands.add_parser("quota", help="a tenant's run quota (HTTP)")
    quota_commands = quotas.add_subparsers(dest="quota_command", required=True)
    showing = _http(add, quota_commands, "show", "plan defaults, overrides, effective limits",
                    _quota_show)
    showing.add_argument("tenant_id", metavar="TENANT")
    setting = _http(add, quota_commands, "set", "set or remove overrides", _quota_set)
    setting.add_argument("tenant_id", metavar="TENANT")
    setting.add_argument("overrides", metavar="KEY=VALUE", nargs="+", type=_override,
                         help="runs_per_hour=500, concurrent_runs=default (removes it)")

    spending = _http(add, commands, "spend",
                     "record a spend (exit 3 when it fires the kill-switch)", _spend)
    spending.add_argument("cents", metavar="CENTS", type=_cents,
                          help="the cost in US cents, may be fractional: 0.4 is $0.004")
    _scope_options(spending)
    spending.add_argument("--idempotency-key", metavar="KEY",
                          help="give one to make running the command again safe (default:"
                          " a new one, reused by this command's own retries)")
    spending.add_argument("--task", metavar="ID")
    spending.add_argument("--model")
    spending.add_argument("--input-tokens", type=int)
    spending.add_argument("--output-tokens", type=int)
    checking = _http(add, commands, "preflight",
                     "may these scopes run? (exit 3 when a paused cap refuses)", _preflight)
    _scope_options(checking)


def add_audit_tail(audit_commands: Any, add: Adder) -> None:
    tail = _http(add, audit_commands, "tail",
                 "the latest audit rows, oldest first; --follow for new ones (HTTP)",
                 _audit_tail)
    tail.add_argument("--follow", "-f", action="store_true",
                      help="keep printing new rows until interrupted")
    tail.add_argument("--limit", "-n", type=_positive(int), default=20,
                      help="how many rows to start with (default 20, at most 1000)")
    tail.add_argument("--event-type", choices=records.EVENT_TYPES)
    tail.add_argument("--agent", metavar="ID")
    tail.add_argument("--interval", type=_positive(float), default=1.0,
                      help="seconds between reads with --follow (default 1)")


# --- guardrails and tools ---------------------------------------------------------------------

GUARDRAIL_HEADER = ("ID", "NAME", "STATUS", "VERSION", "UPDATED")
TOOL_HEADER = ("NAME", "STATUS", "CATEGORIES", "NOTE")


def _document_file(path: str) -> Any:
    """A JSON document from a file ('-': stdin), numbers read exactly."""
    text = sys.stdin.read() if path == "-" else Path(path).read_text()
    try:
        return json.loads(text, parse_float=Decimal)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not JSON: {exc}") from exc


def _guardrail_row(policy: dict[str, Any]) -> tuple[str, ...]:
    return (policy["id"], policy["name"], policy["status"], str(policy["version"]),
            policy["updated_at"])


def _guardrails_list(args: argparse.Namespace, api: client.Client) -> int:
    page = api.list_guardrails(status=args.status, tool=args.tool, limit=args.limit,
                               cursor=args.cursor)
    if args.json:
        _print_json(page)
    else:
        _table(GUARDRAIL_HEADER, map(_guardrail_row, page["data"]))
        if page["has_more"]:
            print(f"more: --cursor {page['next_cursor']}")
    return EXIT_OK


def _guardrails_show(args: argparse.Namespace, api: client.Client) -> int:
    _print_json(api.get_guardrail(args.policy_id, version=args.version))
    return EXIT_OK


def _guardrails_create(args: argparse.Namespace, api: client.Client) -> int:
    policy = api.create_guardrail(_document_file(args.file), idempotency_key=args.idempotency_key)
    if args.json:
        _print_json(policy)
    else:
        _table(GUARDRAIL_HEADER, [_guardrail_row(policy)])
    return EXIT_OK


def _guardrails_evaluate(args: argparse.Namespace, api: client.Client) -> int:
    verdict = api.evaluate_guardrails(_document_file(args.file))
    if args.json:
        _print_json(verdict)
    else:
        print(f"{verdict['decision']}: {verdict['explanation']}")
    return EXIT_OK


def _tool_row(tool: dict[str, Any]) -> tuple[str, ...]:
    note = tool["deprecation_reason"] or ""
    if tool["replacement"]:
        note += f" (use {tool['replacement']})"
    return (tool["name"], tool["status"], ",".join(tool["categories"]), note.strip())


def _print_tools(args: argparse.Namespace, tools: list[dict[str, Any]]) -> int:
    if args.json:
        _print_json({"tools": tools})
    else:
        _table(TOOL_HEADER, map(_tool_row, tools))
    return EXIT_OK


def _tools_list(args: argparse.Namespace, api: client.Client) -> int:
    return _print_tools(args, api.list_tools(include_archived=args.include_archived))


def _tools_create(args: argparse.Namespace, api: client.Client) -> int:
    return _print_tools(args, [api.register_tool(args.name, args.categories,
                                                 description=args.description)])


def _tools_deprecate(args: argparse.Namespace, api: client.Client) -> int:
    return _print_tools(args, [api.deprecate_tool(args.name, args.reason,
                                                  replacement=args.replacement)])


def _tools_archive(args: argparse.Namespace, api: client.Client) -> int:
    return _print_tools(args, [api.archive_tool(args.name)])


def _receipts_show(args: argparse.Namespace, api: client.Client) -> int:
    _print_json(api.receipt(args.receipt_id))
    return EXIT_OK


def _report(args: argparse.Namespace, api: client.Client) -> int:
    report = api.governance_report(period=args.period)
    if args.json:
        _print_json(report)
        return EXIT_OK
    rate = report["approval_rate"]
    minutes = report["avg_approval_time_minutes"]
    _table(("FIGURE", "VALUE"), [
        ("period", report["period"]),
        ("total_executions", str(report["total_executions"])),
        ("gated_executions", str(report["gated_executions"])),
        ("approved", str(report["approved"])),
        ("rejected", str(report["rejected"])),
        ("approval_rate", "-" if rate is None else str(rate)),
        ("avg_approval_time_minutes", "-" if minutes is None else str(minutes)),
    ])
    if report["top_approvers"]:
        print()
        _table(("APPROVER", "APPROVALS"), [(a["user_id"], str(a["approvals"]))
                                           for a in report["top_approvers"]])
    return EXIT_OK


def add_authorize_commands(commands: Any, add: Adder) -> None:
    """receipts and report, under the top-level `commands`."""
    receipts = commands.add_parser("receipts", help="authorize's receipts (HTTP)")
    receipt_commands = receipts.add_subparsers(dest="receipts_command", required=True)
    showing = _http(add, receipt_commands, "show", "one receipt as JSON: everything behind"
                    " its verdict", _receipts_show)
    showing.add_argument("receipt_id", metavar="ID")
    reporting = _http(add, commands, "report",
                      "the governance report: verdicts and approvals over a period", _report)
    reporting.add_argument("--period", choices=("last_24_hours", "last_7_days", "last_30_days"),
                           default="last_30_days")


def add_gate_commands(commands: Any, add: Adder) -> None:
    """guardrails and tools, under the top-level `commands`."""
    guardrails = commands.add_parser("guardrails", help="guardrail policies and dry runs (HTTP)")
    guardrail_commands = guardrails.add_subparsers(dest="guardrails_command", required=True)
    listing = _http(add, guardrail_commands, "list", "guardrail policies, newest first",
                    _guardrails_list)
    listing.add_argument("--status", choices=("active", "disabled"))
    listing.add_argument("--tool", help="only policies with a rule for this tool (or any tool)")
    listing.add_argument("--limit", type=_positive(int), help="at most this many (1-100)")
    listing.add_argument("--cursor", help="the next page, as a previous list printed it")
    showing = _http(add, guardrail_commands, "show", "one policy as JSON", _guardrails_show)
    showing.add_argument("policy_id", metavar="ID")
    showing.add_argument("--version", type=_positive(int), help="that version, verbatim")
    creating = _http(add, guardrail_commands, "create",
                     "create a policy from a JSON file {name, rules, ...}", _guardrails_create)
    creating.add_argument("--file", required=True, help="the create body ('-': stdin)")
    creating.add_argument("--idempotency-key",
                          help="the same key answers the same policy (default: a new one)")
    trying = _http(add, guardrail_commands, "evaluate",
                   "dry run: a JSON file {action, policies?, principal?, context?}",
                   _guardrails_evaluate)
    trying.add_argument("--file", required=True, help="the evaluate body ('-': stdin)")

    tools = commands.add_parser("tools", help="the tool registry (HTTP)")
    tool_commands = tools.add_subparsers(dest="tools_command", required=True)
    listing = _http(add, tool_commands, "list", "registered tools", _tools_list)
    listing.add_argument("--include-archived", action="store_true")
    creating = _http(add, tool_commands, "create", "register a tool", _tools_create)
    creating.add_argument("name")
    creating.add_argument("--category", dest="categories", action="append", required=True,
                          choices=("external_comm", "public_writes", "permission_changes",
                                   "financial", "pii", "other"), help="repeat for several")
    creating.add_argument("--description")
    deprecating = _http(add, tool_commands, "deprecate",
                        "deprecate a tool: it still runs, with a warning", _tools_deprecate)
    deprecating.add_argument("name")
    deprecating.add_argument("--reason", required=True)
    deprecating.add_argument("--replacement", help="the tool to use instead")
    archiving = _http(add, tool_commands, "archive", "archive a tool, for good",
                      _tools_archive)
    archiving.add_argument("name")
