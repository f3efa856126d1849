"""Policy cost: `decide` latency at 10 and 500 rules, and pin checking of a 100-tool `tools/list`.

    .venv/bin/python benchmarks/policy_bench.py [--decisions N] [--listings N] [--sessions N]

Decisions (`gateway.policy.engine.decide`, a pinned ToolView with a 6-property inputSchema): the
call is decided by an allow rule near the end of the list (worst case for first match; two
conditional deny rules that do not hold are tried first), or by the default (no tool pattern
matches), once with `default = "deny"` and once with `default = "allow"` (which still validates
the arguments against the tool's pinned schema). To show what that validation costs, the allow
rule also decides a tool whose descriptor has no inputSchema. Steady: the same tool name every
time (the engine memoises the candidate rules per name). Cold: a never-seen tool name every time
(every rule's globs are tried). Per-decision p50/p99 in microseconds, timer overhead included.

Listings (`PolicyMediator.on_upstream_response("tools/list", ...)` on 100 realistic tools: RFC
8785 hashing, the poisoning scan, pin comparison, policy hiding, validators), without a lockfile
(the session pins what it first sees) and with a lockfile pinning all 100. First and second: the
first two listings of a new session (a fresh mediator and candidate memo, as in a new gateway
process); later: the third listing on, in one session. No flight log. The policy allows only
`warehouse.query_*`, so 10 tools are shown, 90 hidden by the default deny. Per-listing p50/p99
in ms (by default, the p99 of first and second is the slowest of 12 sessions).

Targets (issue 4): decide p50 <= 20 us at 500 rules; a 100-tool list checked in <= 5 ms.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import orjson

from gateway.mediation.interface import Forward
from gateway.mediation.listings import reset_memos
from gateway.mediation.mediator import PolicyMediator
from gateway.policy.engine import CallRequest, CompiledPolicy, Decision, SessionState, ToolView, decide
from gateway.policy.model import parse_policy
from gateway.screening.pins import Lock

SERVER = "warehouse"
TARGET_TOOL = "query_rows"  # decided by the allow rule two from the end
DEFAULT_TOOL = "vacuum_table"  # matched by no rule's tools

# -- policies -----------------------------------------------------------------------------------

GLOBAL_RULES: list[dict[str, Any]] = [
    {"id": "no-shell", "tools": ["*.run_command", "*.exec*", "*.shell"], "action": "deny", "reason": "no shell through the gateway"},
    {"id": "no-etc-writes", "tools": ["*.write_*", "*.delete_file"], "action": "deny", "arguments": {"path": {"path_prefix": "/etc"}}},
    {"id": "no-metadata-fetch", "tools": ["*.fetch*", "*.http_*"], "action": "deny",
     "arguments": {"url": {"pattern": r"https?://(169\.254\.169\.254|metadata\.google\.internal|10\.[0-9.]+)(:[0-9]+)?/.*"}}},
    {"id": "no-system-tables", "tools": ["*.query_*"], "action": "deny",
     "arguments": {"table": {"pattern": r"(?i)(pg_|information_schema|sys\.|mysql\.).*"}}},
]  # fmt: skip

TAIL_RULES: list[dict[str, Any]] = [
    {"id": "warehouse-no-bulk", "tools": ["warehouse.query_*", "warehouse.export_*"], "action": "deny",
     "reason": "bulk reads go through the export pipeline", "arguments": {"limit": {"minimum": 100_001}}},
    {"id": "warehouse-queries", "tools": ["warehouse.query_*"], "action": "allow", "arguments": {
        "table": {"enum": ["orders", "customers", "invoices", "shipments", "events"]},
        "query": {"max_length": 4000, "prefix": "select "},
        "limit": {"minimum": 1, "maximum": 10_000, "optional": True},
        "region": {"prefix": "eu-", "max_length": 32},
        "path": {"path_prefix": "/srv/exports", "optional": True},
        "timeout_s": {"fixed": 30}}},
    {"id": "warehouse-no-ddl", "tools": ["warehouse.drop_*", "warehouse.truncate_*", "warehouse.alter_*"], "action": "deny"},
]  # fmt: skip


def filler_rule(index: int) -> dict[str, Any]:
    """One of the rules for the other servers, cycling through the kinds a real policy has."""
    srv = f"srv{index // 6}"
    kind = index % 6
    rid = f"r{index}-{srv}"
    if kind == 0:
        return {"id": rid, "tools": [f"{srv}.report_*", f"{srv}.get_report"], "action": "allow", "arguments": {
            "format": {"enum": ["csv", "json", "parquet"]}, "limit": {"minimum": 1, "maximum": 500}}}  # fmt: skip
    if kind == 1:
        return {"id": rid, "tools": [f"{srv}.list_buckets", f"{srv}.describe_bucket"], "action": "allow",
                "arguments": {"bucket": {"prefix": "team-", "max_length": 63}}}  # fmt: skip
    if kind == 2:
        return {"id": rid, "tools": [f"{srv}.write_file", f"{srv}.move_file"], "action": "deny",
                "arguments": {"path": {"path_prefix": "/srv/shared/readonly"}}}  # fmt: skip
    if kind == 3:
        return {"id": rid, "tools": [f"{srv}.send_*"], "action": "deny", "reason": "mail only to our own domain",
                "arguments": {"to": {"pattern": r"[^@]+@(?:[a-z0-9-]+\.)*(?:gmail|outlook|proton)\.[a-z]+"}}}  # fmt: skip
    if kind == 4:
        return {"id": rid, "tools": [f"{srv}.tool_*"], "action": "allow", "annotations": {"readOnlyHint": True}}
    return {"id": rid, "tools": [f"{srv}.purge_cache", f"{srv}.rotate_keys", f"{srv}.exec_sql"], "action": "deny"}


def make_policy(rules: int, default: str = "deny") -> CompiledPolicy:
    fillers = [filler_rule(i) for i in range(rules - len(GLOBAL_RULES) - len(TAIL_RULES))]
    raw = {"version": 1, "name": f"bench-{rules}", "default": default, "rules": [*GLOBAL_RULES, *fillers, *TAIL_RULES]}
    return CompiledPolicy.from_file(parse_policy(raw, f"bench-{rules}"))


def fresh_memo(policy: CompiledPolicy) -> CompiledPolicy:
    """The same compiled rules with an empty candidate memo (as in a new gateway process)."""
    return policy.with_empty_memo()


# -- tools --------------------------------------------------------------------------------------


def query_descriptor(name: str) -> dict[str, Any]:
    return {
        "name": name,
        "title": "Query warehouse rows",
        "description": "Runs a read-only SQL query against one table of the analytics warehouse. Results are returned as "
        "JSON rows keyed by column name, at most `limit` of them. Queries time out after `timeout_s` seconds.",
        "inputSchema": {
            "type": "object",
            "properties": {
                "table": {"type": "string", "description": "the table to query, e.g. orders"},
                "query": {"type": "string", "maxLength": 8000, "description": "a single SELECT statement"},
                "limit": {"type": "integer", "minimum": 1, "maximum": 1_000_000, "description": "the maximum number of rows"},
                "region": {"type": "string", "description": "the warehouse region, e.g. eu-west-1"},
                "path": {"type": "string", "description": "optional: write the rows as CSV to this path"},
                "timeout_s": {"type": "integer", "minimum": 1, "maximum": 600},
            },
            "required": ["table", "query"],
            "additionalProperties": False,
        },
        "annotations": {"readOnlyHint": True, "openWorldHint": False},
    }


def schemaless(name: str) -> dict[str, Any]:
    """The query tool without its inputSchema: the decision skips the pinned-schema validation."""
    return {k: v for k, v in query_descriptor(name).items() if k != "inputSchema"}


def vacuum_descriptor(name: str) -> dict[str, Any]:
    return {
        "name": name,
        "title": "Vacuum a table",
        "description": "Reclaims the storage of deleted rows in one table and refreshes its planner statistics.",
        "inputSchema": {
            "type": "object",
            "properties": {
                "table": {"type": "string", "description": "the table to vacuum"},
                "full": {"type": "boolean", "description": "rewrite the whole table (locks it)"},
                "analyze": {"type": "boolean"},
                "timeout_s": {"type": "integer", "minimum": 1, "maximum": 3600},
            },
            "required": ["table"],
        },
        "annotations": {"readOnlyHint": False, "destructiveHint": False, "idempotentHint": True},
    }


QUERY_ARGS = {"table": "orders", "query": "select id, total from orders where created_at > '2025-01-01'", "limit": 100,
              "region": "eu-west-1", "path": "/srv/exports/q1/orders.csv"}  # fmt: skip
VACUUM_ARGS = {"table": "orders", "full": False, "analyze": True, "timeout_s": 120}

VERBS = ["query", "read", "list", "get", "create", "update", "delete", "search", "export", "describe"]
NOUNS = ["rows", "tables", "schemas", "jobs", "reports", "users", "buckets", "files", "alerts", "dashboards"]


def listed_tool(verb: str, noun: str) -> dict[str, Any]:
    """A realistic descriptor: title, a few sentences, 4-6 documented properties, annotations."""
    writes = verb in ("create", "update", "delete")
    properties: dict[str, Any] = {
        "project": {"type": "string", "description": f"the project that owns the {noun}, e.g. analytics-prod"},
        "limit": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100, "description": "how many results per page"},
        "cursor": {"type": "string", "description": "the nextCursor of the previous page, to continue a listing"},
        "order": {"type": "string", "enum": ["asc", "desc"], "description": "sort order by creation time"},
    }
    if verb in ("query", "search"):
        properties["filter"] = {"type": "string", "maxLength": 2000, "description": f"a filter expression over the {noun}' fields"}
    if writes:
        properties["dry_run"] = {"type": "boolean", "default": True, "description": "only report what would change"}
        properties["labels"] = {"type": "object", "additionalProperties": {"type": "string"}, "description": "labels to set"}
    return {
        "name": f"{verb}_{noun}",
        "title": f"{verb.capitalize()} {noun}",
        "description": f"{verb.capitalize()}s {noun} in the analytics warehouse of the selected project. Results are returned "
        f"as JSON objects, newest first, and long results are paginated: pass the returned cursor to get the next page. "
        f"{'Changes are applied in one transaction and can be previewed with dry_run.' if writes else 'Nothing is changed.'} "
        f"Requires the {'editor' if writes else 'viewer'} role on the project.",
        "inputSchema": {"type": "object", "properties": properties, "required": ["project"], "additionalProperties": False},
        "annotations": {"readOnlyHint": not writes, "destructiveHint": verb == "delete", "idempotentHint": verb != "create",
                        "openWorldHint": False},
    }  # fmt: skip


# -- measuring ----------------------------------------------------------------------------------


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def time_each(calls: list[Callable[[], Any]]) -> list[float]:
    """Nanoseconds per call, each timed on its own."""
    clock = time.perf_counter_ns
    samples = []
    for call in calls:
        started = clock()
        call()
        samples.append(clock() - started)
    return samples


def decision_samples(policy: CompiledPolicy, tool: str, args: dict[str, Any], build: Callable[[str], dict[str, Any]],
                     count: int, cold: bool, expect: tuple[str, str]) -> list[float]:  # fmt: skip
    """Microseconds per decision. Cold: a new tool name (so a new memo entry) for every decision."""
    session = SessionState()
    view = ToolView.build(SERVER, build(tool), "ab" * 32, "pinned")
    warmup = count // 10
    names = [f"{tool}_c{i}" if cold else tool for i in range(warmup + count)]
    calls = [partial(decide, CallRequest(SERVER, name, args), view, session, policy) for name in names]
    decision: Decision = calls[0]()
    if (decision.outcome, decision.rule) != expect:
        raise SystemExit(f"unexpected decision for {tool}: {decision}")
    time_each(calls[1 : warmup + 1])
    gc.collect()
    return [ns / 1e3 for ns in time_each(calls[warmup + 1 :])]


def one_listing(mediator: PolicyMediator, tools_json: bytes, request_id: int) -> tuple[float, int]:
    """Milliseconds for the mediator to check one `tools/list` response, and how many tools it shows."""
    verdict = mediator.on_client_request("tools/list", {"jsonrpc": "2.0", "id": request_id, "method": "tools/list", "params": {}})
    assert isinstance(verdict, Forward)
    message = {"jsonrpc": "2.0", "id": request_id, "result": {"tools": orjson.loads(tools_json)}}  # as decoded off the wire
    started = time.perf_counter_ns()
    out = mediator.on_upstream_response("tools/list", verdict.context, message)
    elapsed = time.perf_counter_ns() - started
    assert isinstance(out, dict)
    return elapsed / 1e6, len(out["result"]["tools"])


def listing_samples(policy: CompiledPolicy, tools_json: bytes, lock: Lock | None, sessions: int,
                    listings: int) -> tuple[dict[str, list[float]], int]:  # fmt: skip
    """Per-listing ms: the first and second listing of `sessions` new sessions (a fresh mediator
    and candidate memo each, as in a new gateway process), and `listings` later listings (third
    and on) of one session. One session more, and a tenth more listings, run first as warm-up."""
    samples: dict[str, list[float]] = {"cold": [], "first": [], "second": [], "later": []}
    shown = 0
    for session in range(sessions + 1):
        reset_memos()  # a new process: nothing scanned or compiled yet
        cold, _ = one_listing(PolicyMediator(fresh_memo(policy), identity=SERVER, lock=lock), tools_json, 1)
        if session:
            samples["cold"].append(cold)
        mediator = PolicyMediator(fresh_memo(policy), identity=SERVER, lock=lock)
        first, _ = one_listing(mediator, tools_json, 1)
        second, shown = one_listing(mediator, tools_json, 2)
        if session:
            samples["first"].append(first)
            samples["second"].append(second)
    mediator = PolicyMediator(fresh_memo(policy), identity=SERVER, lock=lock)
    warmup = 2 + listings // 10
    for index in range(warmup + listings):
        elapsed, _ = one_listing(mediator, tools_json, index + 1)
        if index >= warmup:
            samples["later"].append(elapsed)
    return samples, shown


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--decisions", type=int, default=20_000, help="timed decisions per row")
    parser.add_argument("--listings", type=int, default=80, help="later listings of one session, per row")
    parser.add_argument("--sessions", type=int, default=12, help="new sessions per row (first and second listing)")
    args = parser.parse_args()

    overhead = statistics.median(time_each([lambda: None] * 10_000))
    print(f"decide(): {args.decisions} decisions per row after {args.decisions // 10} warm-up; timer overhead "
          f"~{overhead:.0f} ns per sample, included")  # fmt: skip
    print(f"{'rules':>5}  {'decided by':<32}{'state':<8}{'p50 us':>9}{'p99 us':>9}{'vs 10 rules':>13}")
    cases = [
        ("allow rule near the end", "deny", TARGET_TOOL, QUERY_ARGS, query_descriptor, ("allow", "warehouse-queries")),
        ("same, tool without inputSchema", "deny", TARGET_TOOL, QUERY_ARGS, schemaless, ("allow", "warehouse-queries")),
        ("default (deny)", "deny", DEFAULT_TOOL, VACUUM_ARGS, vacuum_descriptor, ("deny", "default.deny")),
        ("default (allow, schema check)", "allow", DEFAULT_TOOL, VACUUM_ARGS, vacuum_descriptor, ("allow", "default.allow")),
    ]
    policies = {(n, d): make_policy(n, d) for n in (10, 500) for d in ("deny", "allow")}
    results: dict[tuple[int, str, str], tuple[float, float]] = {}
    for label, default, tool, call_args, build, expect in cases:
        for state in ("steady", "cold"):
            for rules in (10, 500):
                # A new memo per row: the cold rows fill it with thousands of names.
                policy = fresh_memo(policies[(rules, default)])
                lat = decision_samples(policy, tool, call_args, build, args.decisions, state == "cold", expect)
                p50, p99 = statistics.median(lat), quantile(lat, 0.99)
                results[(rules, label, state)] = (p50, p99)
                ratio = f"{p50 / results[(10, label, state)][0]:>12.2f}x" if rules == 500 else ""
                print(f"{rules:>5}  {label:<32}{state:<8}{p50:>9.2f}{p99:>9.2f}{ratio:>13}")
    cold_vs_steady = (f"{label}: {results[(500, label, 'cold')][0] / results[(500, label, 'steady')][0]:.1f}x" for label, *_ in cases)
    print(f"cold vs steady at 500 rules (p50): {', '.join(cold_vs_steady)}")
    worst = max(results[(500, label, "steady")][0] for label, *_ in cases)
    print(f"target p50 <= 20 us at 500 rules (steady): {'met' if worst <= 20 else 'MISSED'} (worst steady p50 {worst:.2f} us)")

    tools = [listed_tool(verb, noun) for verb in VERBS for noun in NOUNS]
    tools_json = orjson.dumps(tools)
    lock = Lock()
    for tool in tools:
        lock.server(SERVER).put("tools", tool["name"], tool)
    print()
    print(f"tools/list of {len(tools)} tools ({len(tools_json) / 1024:.0f} KiB); first and second listing: {args.sessions} new "
          f"sessions per row, later: {args.listings} listings of one session; no flight log")  # fmt: skip
    print(f"{'rules':>5}  {'pins':<22}{'listing':<42}{'n':>5}{'p50 ms':>9}{'p99 ms':>9}{'shown':>7}")
    labels = {
        "cold": "first in a new process (scans, no memo)",
        "first": "first of a new session (memoised scans)",
        "second": "second (same session)",
        "later": "later (3rd and on, same session)",
    }
    modes = {"session (no lockfile)": None, "lockfile, all pinned": lock}
    listing: dict[tuple[int, str, str], float] = {}
    for rules in (10, 500):
        for pins, pin_lock in modes.items():
            samples, shown = listing_samples(policies[(rules, "deny")], tools_json, pin_lock, args.sessions, args.listings)
            for which, lat in samples.items():
                p50, p99 = statistics.median(lat), quantile(lat, 0.99)
                listing[(rules, pins, which)] = p50
                print(f"{rules:>5}  {pins:<22}{labels[which]:<42}{len(lat):>5}{p50:>9.2f}{p99:>9.2f}{shown:>7}")
    for pins in modes:
        cold, first, second, later = (listing[(500, pins, which)] for which in ("cold", "first", "second", "later"))
        size = first / listing[(10, pins, "first")]
        print(f"{pins}, 500 rules: cold/later {cold / later:.1f}x, first/later {first / later:.1f}x, second/later {second / later:.1f}x; "
              f"first listing 500 vs 10 rules {size:.2f}x")  # fmt: skip
    met = [f"{rules} rules, {pins}, {which}" for (rules, pins, which), p50 in listing.items() if p50 <= 5]
    print(
        f"target <= 5 ms per 100-tool listing (p50): {'met' if len(met) == len(listing) else 'MISSED'} "
        f"(met by {len(met)} of {len(listing)} rows{': ' + '; '.join(met) if met else ''}; worst p50 {max(listing.values()):.2f} ms)"
    )


if __name__ == "__main__":
    main()
