"""Per-call cost of label-flow checking, by how many fingerprints the session holds.

    .venv/bin/python benchmarks/provenance_bench.py

A session reads labelled results (emails: structured headers, a private body with addresses,
codes, IBANs and prose) until it holds about 100, 10,000 and 100,000 fingerprints; then a
`send_email` call (to, subject, a 400-character body) is checked: every argument's labels
(`argument_taints`) and the flow rules (`check_flows`). Printed: p50/p99 microseconds per call
and the ratio to the 100-fingerprint session, and memory per 10,000 fingerprints (tracemalloc,
the fingerprint dict and the sources it keeps). Targets (issue 5): <= 50 us per call at 10,000
fingerprints; memory bounded by the cap.
"""

from __future__ import annotations

import argparse
import gc
import random
import statistics
import time
import tracemalloc
from typing import Any

from gateway.labels.masks import UNTRUSTED
from gateway.labels.provenance import Provenance, field_values
from gateway.policy.flows import CompiledFlows, argument_taints, check_flows
from gateway.policy.model import parse_policy

POLICY = parse_policy(
    {
        "version": 1,
        "labels": {"max_fingerprints": 1_000_000},
        "tools": [
            {"tools": ["mail.read_email"], "class": "read", "fields": {"body": "private"}, "readers": ["from", "to"],
             "trusted_fields": ["from", "to"]},
            {"tools": ["mail.send_email"], "class": "egress", "control": ["to"], "recipients": ["to"]},
        ],
        "flows": [
            {"id": "no-private-egress", "labels": ["private", "secret"], "to": ["egress"], "readers_may_receive": True},
            {"id": "no-untrusted-control", "labels": ["untrusted"], "to": ["write", "exec", "egress"], "arguments": "control"},
        ],
    },
    "bench",
)  # fmt: skip
WORDS = ("meeting", "report", "quarter", "invoice", "please", "review", "attached", "budget", "team", "schedule", "thanks", "update")
OTHER_WORDS = ("roadmap", "hiring", "offsite", "venue", "catering", "agenda", "travel", "slides", "keynote", "workshop", "dinner", "notes")


def email(rng: random.Random, index: int) -> dict[str, Any]:
    code = f"{rng.randrange(10**6):06d}"
    iban = f"DE{rng.randrange(10**20):020d}"
    prose = " ".join(rng.choice(WORDS) for _ in range(40))
    body = (f"Hi, {prose}. Your code is {code}; pay {iban} by Friday. Contact user{index}@corp{index % 97}.example or see "
            f"https://docs.corp.example/t/{index}-{code}.")  # fmt: skip
    return {"from": f"sender{index}@corp.example", "to": "me@example.com", "subject": f"Re: ticket {index}", "body": body}


def fill(provenance: Provenance, flows: CompiledFlows, target: int, rng: random.Random) -> int:
    facts = flows.facts("mail", "read_email", {"readOnlyHint": True, "openWorldHint": False}, None)
    results = 0
    while provenance.size < target:
        structured = email(rng, results)
        values, _ = field_values(structured, facts.fields, UNTRUSTED, facts.trusted_fields)
        provenance.add("mail", "read_email", f"{results:064x}", "2026-11-22T00:00:00Z", UNTRUSTED, values, frozenset({"me@example.com"}))
        results += 1
    return results


def call_samples(provenance: Provenance, flows: CompiledFlows, count: int) -> list[float]:
    facts = flows.facts("mail", "send_email", {}, None)
    # Not the e-mails' vocabulary: a body made of WORDS shares a 6-word passage with one of 1,600
    # random e-mails of those words often enough to be refused (rightly) in some runs.
    body = ("Hello Carol, following up on our conversation: " + " ".join(OTHER_WORDS) * 3)[:400]
    arguments = {"to": "carol@partner.example", "subject": "Follow-up on the quarterly plan", "body": body}
    clock = time.perf_counter_ns
    samples = []
    # A fresh body each call (a word counter in front), so the provenance's memo of recent
    # argument texts never answers for a repeated call.
    calls = [{**arguments, "body": f"{'x' * (1 + i % 7)}{chr(97 + i % 26)}{chr(97 + i // 26 % 26)} {body}"} for i in range(count)]
    for call in calls:
        started = clock()
        taints = argument_taints(provenance, call)
        verdict = check_flows(flows, "mail", "send_email", facts, call, taints, provenance.coarse(), policy_shadow=False)
        samples.append((clock() - started) / 1e3)
    assert verdict.outcome == "allow", verdict
    return samples


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=5_000)
    args = parser.parse_args()
    flows = CompiledFlows.from_file(POLICY)
    print(f"send_email flow check (3 arguments, 400-character body); {args.calls} calls per row")
    print(f"{'fingerprints':>12}{'results':>9}{'p50 us':>9}{'p99 us':>9}{'vs 100':>9}{'MiB':>8}{'MiB per 10k':>13}")
    base = None
    p50s: dict[int, float] = {}
    for target in (100, 10_000, 100_000):
        rng = random.Random(7)
        gc.collect()
        tracemalloc.start()
        provenance = flows.new_provenance()
        results = fill(provenance, flows, target, rng)
        current, _ = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        lat = call_samples(provenance, flows, args.calls)
        p50, p99 = statistics.median(lat), sorted(lat)[int(0.99 * len(lat))]
        base = base or p50
        p50s[target] = p50
        mib = current / 2**20
        print(f"{provenance.size:>12}{results:>9}{p50:>9.1f}{p99:>9.1f}{p50 / base:>8.2f}x{mib:>8.1f}{mib / provenance.size * 1e4:>13.2f}")
    cap = 10_000
    capped = Provenance(cap=cap, min_token=6)
    rng = random.Random(7)
    fill_results = 0
    facts = flows.facts("mail", "read_email", {"readOnlyHint": True, "openWorldHint": False}, None)
    while not capped.saturated and fill_results < 100_000:
        values, _ = field_values(email(rng, fill_results), facts.fields, UNTRUSTED, facts.trusted_fields)
        capped.add("mail", "read_email", "0" * 64, "t", UNTRUSTED, values)
        fill_results += 1
    print(f"cap {cap}: saturated after {fill_results} results; fingerprints kept {capped.size} (bounded), checks coarse from then on")
    at_10k = p50s[10_000]
    print(f"target <= 50 us per call at 10,000 fingerprints (p50): {'met' if at_10k <= 50 else 'MISSED'} ({at_10k:.1f} us)")


if __name__ == "__main__":
    main()
