"""False positives of precise label flow: ordinary arguments sent after private reads stay CLEAN.

A session reads realistic private data (e-mails with bodies, a bank statement with IBANs, a
secrets file with API keys and a passphrase, a file listing), all generated from a fixed seed;
then a corpus of ordinary calls, generated from another seed and never copying a value read,
is checked: hashes, UUIDs, timestamps, file paths, base64 images, common and long words, English
sentences, JSON, URLs, numbers and random identifiers. Every argument must be CLEAN. A false
positive that is understood and accepted goes in `ACCEPTED` with its reason; any other fails."""

from __future__ import annotations

import base64
import hashlib
import json
import random
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from gateway.labels.masks import PRIVATE, SECRET, UNTRUSTED
from gateway.labels.provenance import Provenance, field_values


def _words_of(text: str) -> tuple[str, ...]:
    return tuple(text.split())


COMMON = _words_of(
    "the a of and to in is for on with as at by from this that it be are was will can we you they our your please thanks "
    "meeting report budget review team project update schedule invoice customer delivery quarter office notes agenda plan "
    "draft release version server account payment order ticket issue status weekly today tomorrow monday friday morning"
)
LONG = _words_of(
    "unfortunately communication organization responsibility documentation presentation acknowledgement configuration "
    "implementation international appreciation announcement requirements availability consideration recommendation "
    "confidential administrator transportation understanding"
)
NAMES = ("Alice Martin", "Bob Okafor", "Carol Nguyen", "Dan Weber", "Erin Rossi", "Farid Haddad")
ALNUM = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
ACCEPTED: dict[str, str] = {}  # call id -> why its taint is right (none so far)


def _prose(rng: random.Random, words: int) -> str:
    vocabulary = COMMON * 4 + LONG
    return " ".join(rng.choice(vocabulary) for _ in range(words)).capitalize() + "."


def _alnum(rng: random.Random, length: int) -> str:
    return "".join(rng.choice(ALNUM) for _ in range(length))


def _iban(rng: random.Random) -> str:
    return f"DE{rng.randrange(10, 100)}{rng.choice(('50010517', '37040044', '12030000'))}{rng.randrange(10**10):010d}"


def private_reads(rng: random.Random) -> list[tuple[str, int, list[tuple[str, int, bool]]]]:
    """(tool, result labels, values) of each private read."""
    reads = []
    for index in range(6):
        sender = NAMES[index].split()[0].lower()
        mail = {
            "from": f"{sender}@corp.example",
            "to": "jane.doe@home.example",
            "subject": f"Re: {rng.choice(COMMON)} {rng.choice(COMMON)} #{rng.randrange(1000, 9999)}",
            "body": f"Hi Jane, {_prose(rng, 40)} Please pay {_iban(rng)} by Friday, order ORD-{rng.randrange(10**6):06d}. "
            f"Your reset code is {rng.randrange(10**6):06d}. {_prose(rng, 30)} Call me on +49 30 {rng.randrange(10**7):07d}. "
            f"Regards, {NAMES[index]}",
        }
        values, _ = field_values(mail, {"body": PRIVATE}, UNTRUSTED, ("from", "to"))
        reads.append(("read_email", UNTRUSTED, values))
    statement = {
        "owner": "Jane Doe",
        "iban": _iban(rng),
        "transactions": [
            {"date": f"2026-{m:02d}-{d:02d}", "counterparty": rng.choice(NAMES), "iban": _iban(rng),
             "amount": round(rng.uniform(-900, 900), 2), "reference": f"INV-2026-{rng.randrange(10**4):04d} {rng.choice(COMMON)}"}
            for m, d in ((rng.randrange(1, 13), rng.randrange(1, 29)) for _ in range(20))
        ],
    }  # fmt: skip
    values, _ = field_values(statement, {}, PRIVATE)
    reads.append(("get_statement", PRIVATE, values))
    words = ("Correct", "Horse", "Battery", "Staple", "Purple", "Monkey", "Dishwasher", "Glacier")
    secrets = (
        f"AWS_ACCESS_KEY_ID=AKIA{_alnum(rng, 16).upper()}\nAWS_SECRET_ACCESS_KEY={_alnum(rng, 40)}\n"
        f"STRIPE_KEY=sk_live_{_alnum(rng, 24)}\nGITHUB_TOKEN=ghp_{_alnum(rng, 36)}\n"
        f"DATABASE_URL=postgres://app:{_alnum(rng, 12)}@db.internal:5432/app\nJWT_SECRET={rng.randbytes(32).hex()}\n"
        f"PASSPHRASE={''.join(rng.sample(words, 4))}\n"
    )
    reads.append(("read_file", UNTRUSTED | SECRET, [(secrets, UNTRUSTED | SECRET, False)]))
    listing = "\n".join(
        f"/home/jane/{rng.choice(('Documents', 'Pictures', 'Taxes'))}/{rng.choice(COMMON)}-{rng.randrange(2019, 2027)}.pdf "
        f"{rng.randrange(10**6)} 2026-{rng.randrange(1, 13):02d}-{rng.randrange(1, 29):02d}"
        for _ in range(30)
    )
    reads.append(("list_files", PRIVATE, [(listing, PRIVATE, False)]))
    return reads


def _hashes(rng: random.Random) -> Any:
    data = rng.randbytes(32)
    return {"sha256": hashlib.sha256(data).hexdigest(), "md5": hashlib.md5(data).hexdigest(), "commit": hashlib.sha1(data).hexdigest()}


def _uuid(rng: random.Random) -> Any:
    return {"id": str(uuid.UUID(int=rng.getrandbits(128), version=4)), "parent": str(uuid.UUID(int=rng.getrandbits(128), version=4))}


def _timestamp(rng: random.Random) -> Any:
    epoch = rng.randrange(1_600_000_000, 1_900_000_000)
    day = f"2027-{rng.randrange(1, 13):02d}-{rng.randrange(1, 29):02d}"
    return {"at": f"{day}T{rng.randrange(24):02d}:{rng.randrange(60):02d}:00Z", "epoch": epoch,
            "ms": str(epoch * 1000 + rng.randrange(1000))}  # fmt: skip


def _path(rng: random.Random) -> Any:
    return {"path": f"/srv/{rng.choice(COMMON)}/{rng.choice(COMMON)}_{rng.randrange(100)}.{rng.choice(('txt', 'log', 'csv', 'py'))}",
            "windows": f"C:\\Users\\sam\\{rng.choice(COMMON).title()}\\{rng.choice(LONG)}.docx"}  # fmt: skip


def _image(rng: random.Random) -> Any:
    png = b"\x89PNG\r\n\x1a\n" + rng.randbytes(rng.randrange(200, 6000))
    encoded = base64.b64encode(png).decode()
    return {"image": encoded if rng.random() < 0.5 else f"data:image/png;base64,{encoded}"}


def _words(rng: random.Random) -> Any:
    return {"query": rng.choice(LONG), "tags": [rng.choice(COMMON), rng.choice(LONG).upper(), rng.choice(LONG).title()]}


def _sentence(rng: random.Random) -> Any:
    return {"subject": _prose(rng, 6), "body": " ".join(_prose(rng, rng.randrange(8, 25)) for _ in range(rng.randrange(1, 6)))}


def _json(rng: random.Random) -> Any:
    doc = {"id": rng.randrange(10**9), "name": rng.choice(COMMON), "items": [{"sku": f"SKU-{rng.randrange(10**5)}", "qty": rng.randrange(9)}
           for _ in range(rng.randrange(1, 5))], "note": _prose(rng, 10)}  # fmt: skip
    return {"payload": json.dumps(doc)} if rng.random() < 0.5 else doc


def _url(rng: random.Random) -> Any:
    return {
        "url": f"https://{rng.choice(COMMON)}.example.org/{rng.choice(COMMON)}/{rng.randrange(10**6)}?q={rng.choice(LONG)}&page={rng.randrange(50)}"
    }


def _numbers(rng: random.Random) -> Any:
    return {"amount": round(rng.uniform(0, 10**5), 2), "count": rng.randrange(10**7), "phone": f"+1 415 {rng.randrange(10**7):07d}",
            "list": [rng.randrange(300) for _ in range(rng.randrange(1, 30))],
            "csv": ", ".join(str(rng.randrange(200)) for _ in range(12))}  # fmt: skip


def _identifiers(rng: random.Random) -> Any:
    return {
        "order": f"ORD-{rng.randrange(10**8):08d}",
        "tracking": _alnum(rng, 24),
        "key": f"pk_test_{_alnum(rng, 24)}",
        "color": f"#{rng.randbytes(3).hex()}",
    }


KINDS: dict[str, Callable[[random.Random], Any]] = {
    "hashes": _hashes, "uuid": _uuid, "timestamp": _timestamp, "path": _path, "image": _image, "words": _words,
    "sentence": _sentence, "json": _json, "url": _url, "numbers": _numbers, "identifiers": _identifiers,
}  # fmt: skip
PER_KIND = 20


def corpus() -> list[tuple[str, dict[str, Any]]]:
    rng = random.Random(20261208)
    return [(f"{kind}-{n:02d}", make(rng)) for kind, make in KINDS.items() for n in range(PER_KIND)]


CORPUS = corpus()


@pytest.fixture(scope="module")
def session() -> Provenance:
    provenance = Provenance()
    for index, (tool, labels, values) in enumerate(private_reads(random.Random(7))):
        provenance.add("srv", tool, f"{index:064x}", "2026-12-08T00:00:00Z", labels, values)
    return provenance


def test_the_corpus_holds_at_least_200_ordinary_calls_after_realistic_private_reads(session: Provenance) -> None:
    assert len(CORPUS) >= 200
    assert session.size > 1000  # the reads left fingerprints: a clean corpus is not a vacuous one
    assert session.mask == UNTRUSTED | SECRET


@pytest.mark.parametrize(("call_id", "arguments"), CORPUS, ids=[call_id for call_id, _ in CORPUS])
def test_an_ordinary_argument_sent_after_private_reads_is_clean(session: Provenance, call_id: str, arguments: dict[str, Any]) -> None:
    tainted = {name: session.taint(value).mask for name, value in arguments.items()}
    false_positives = {name: mask for name, mask in tainted.items() if mask}
    if call_id in ACCEPTED:
        assert false_positives, f"{call_id} is accepted as a false positive but is now clean: remove it from ACCEPTED"
    else:
        assert not false_positives, f"{call_id}: {false_positives} in {arguments}"


def test_the_same_session_does_trace_a_secret_of_those_reads_sent_encoded(session: Provenance) -> None:
    secrets = next(values for tool, _, values in private_reads(random.Random(7)) if tool == "read_file")[0][0]
    stripe = next(line.split("=", 1)[1] for line in secrets.splitlines() if line.startswith("STRIPE_KEY="))
    assert session.taint(base64.b64encode(stripe.encode()).decode()).mask == UNTRUSTED | SECRET
    assert session.taint(stripe[::-1]).mask == UNTRUSTED | SECRET
