"""Per-call cost of the flow check with the encoding decoders (gateway/labels/decoding.py) and the
piece and letter-run lookups, against the same check with them off, in one run.

    .venv/bin/python benchmarks/flow_bench.py [--calls N]

The session of provenance_bench.py (labelled e-mails with private bodies) plus a secrets file
is filled to about 10,000 fingerprints. Then each call is checked (`argument_taints` and
`check_flows`) with `Provenance.trace_encodings` on and off, alternating in blocks so both see
the same machine state: the 3-argument `send_email` of provenance_bench.py, and one 64 KiB
argument (prose with numbers and links; a base64 image; hex and decimal dumps). Printed: p50
and p99 microseconds and the on/off ratio. Targets (issue 15): p50 <= 60 us for the 3-argument
call and <= 2 ms for a 64 KiB argument, with the decoders on.
"""

from __future__ import annotations

import argparse
import base64
import random
import statistics
import time
from typing import Any

from provenance_bench import OTHER_WORDS, POLICY, WORDS, fill

from gateway.labels.masks import SECRET, UNTRUSTED
from gateway.labels.provenance import Provenance
from gateway.policy.flows import CompiledFlows, argument_taints, check_flows

SECRETS = "API_KEY=sk-live-4f9a2c7e1b8d6035\nGITHUB_TOKEN=ghp_k7Qm2Xp9Lr4Tz8Wv3Ns6Yb1H\nPASSPHRASE=CorrectHorseBatteryStaple\n"
KIB64 = 64 << 10


def _prose(rng: random.Random) -> str:
    parts = []
    while sum(map(len, parts)) < KIB64:
        parts.append(" ".join(rng.choice(WORDS) for _ in range(12)))
        parts.append(
            f"ticket {rng.randrange(10**5)} due 2026-{rng.randrange(1, 13):02d}-{rng.randrange(1, 29):02d}, see https://wiki.example/p/{rng.randrange(10**4)}."
        )
    return " ".join(parts)[:KIB64]


def arguments(rng: random.Random) -> dict[str, dict[str, Any]]:
    body = ("Hello Carol, following up on our conversation: " + " ".join(OTHER_WORDS) * 3)[:400]
    image = base64.b64encode(b"\x89PNG\r\n\x1a\n" + rng.randbytes(KIB64 * 3 // 4)).decode()[:KIB64]
    hexdump = " ".join(f"{rng.randrange(256):02x}" for _ in range(KIB64 // 3))[:KIB64]
    decimal = ", ".join(str(rng.randrange(256)) for _ in range(KIB64 // 4))[:KIB64]
    three = {"to": "carol@partner.example", "subject": "Follow-up on the quarterly plan", "body": body}
    return {
        "3 arguments (400-char body)": three,
        "64 KiB prose": {"to": "carol@partner.example", "body": _prose(rng)},
        "64 KiB base64 image": {"to": "carol@partner.example", "body": image},
        "64 KiB hex dump": {"to": "carol@partner.example", "body": hexdump},
        "64 KiB decimal list": {"to": "carol@partner.example", "body": decimal},
    }


def _letters(number: int) -> str:
    out = ""
    while True:
        number, digit = divmod(number, 26)
        out += chr(97 + digit)
        if not number:
            return out


def samples(provenance: Provenance, flows: CompiledFlows, call: dict[str, Any], count: int, on: bool) -> list[float]:
    facts = flows.facts("mail", "send_email", {}, None)
    provenance.trace_encodings = on
    clock = time.perf_counter_ns
    out = []
    # Each call differs (a counter, in letters, in front of every text), so the provenance's memo
    # of recent argument texts never answers for a repeated call: the figure is of fresh arguments.
    variants = [{name: f"{_letters(i)} {value}" for name, value in call.items()} for i in range(count)]
    for variant in variants:
        started = clock()
        taints = argument_taints(provenance, variant)
        check_flows(flows, "mail", "send_email", facts, variant, taints, provenance.coarse(), policy_shadow=False)
        out.append((clock() - started) / 1e3)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=4_000, help="3-argument calls per mode (64 KiB: a tenth)")
    args = parser.parse_args()
    flows = CompiledFlows.from_file(POLICY)
    provenance = flows.new_provenance()
    provenance.add("files", "read_file", "f" * 64, "t", UNTRUSTED, [(SECRETS, UNTRUSTED | SECRET, False)])
    fill(provenance, flows, 10_000, random.Random(7))
    print(f"flow check at {provenance.size} fingerprints; decoders on vs off, alternating blocks")
    print(f"{'call':<28}{'on p50':>10}{'on p99':>10}{'off p50':>10}{'off p99':>10}{'p50 x':>8}{'p99 x':>8}")
    figures: dict[str, float] = {}
    for name, call in arguments(random.Random(11)).items():
        count = args.calls if name.startswith("3") else max(20, args.calls // 10)
        on: list[float] = []
        off: list[float] = []
        for _ in range(10):
            on += samples(provenance, flows, call, count // 10, True)
            off += samples(provenance, flows, call, count // 10, False)
        (p50, p99), (q50, q99) = ((statistics.median(s), sorted(s)[int(0.99 * len(s))]) for s in (on, off))
        figures[name] = p50
        print(f"{name:<28}{p50:>10.1f}{p99:>10.1f}{q50:>10.1f}{q99:>10.1f}{p50 / q50:>7.2f}x{p99 / q99:>7.2f}x")
    provenance.trace_encodings = True
    three, prose = figures["3 arguments (400-char body)"], figures["64 KiB prose"]
    print(f"target p50 <= 60 us, 3 arguments: {'met' if three <= 60 else 'MISSED'} ({three:.1f} us)")
    print(f"target p50 <= 2 ms, 64 KiB prose: {'met' if prose <= 2000 else 'MISSED'} ({prose / 1000:.2f} ms)")


if __name__ == "__main__":
    main()
