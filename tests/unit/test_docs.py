"""README.md and SECURITY.md name the tests that show each claim, and the modules they describe:
every test file, test function and `gateway/` path they name exists, and the README's Layout
section lists every package of the gateway. A move or a rename that would leave a claim pointing
at nothing fails here."""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = ("README.md", "SECURITY.md")


@cache
def defined_tests() -> frozenset[str]:
    """Every test function and test module name under tests/."""
    names = set()
    for path in (ROOT / "tests").rglob("test_*.py"):
        names.add(path.stem)
        names |= set(re.findall(r"^(?:async )?def (test_\w+)", path.read_text(encoding="utf-8"), re.M))
    return frozenset(names)


@pytest.mark.parametrize("doc", DOCS)
def test_every_test_path_a_doc_names_exists(doc: str) -> None:
    text = (ROOT / doc).read_text(encoding="utf-8")
    missing = sorted({p for p in re.findall(r"\btests/[\w/]+\.py", text) if not (ROOT / p).is_file()})
    assert missing == []


@pytest.mark.parametrize("doc", DOCS)
def test_every_test_a_doc_names_exists(doc: str) -> None:
    text = (ROOT / doc).read_text(encoding="utf-8")
    missing = sorted({name for name in re.findall(r"\btest_\w+", text) if name not in defined_tests()})
    assert missing == []


@pytest.mark.parametrize("doc", DOCS)
def test_every_gateway_path_a_doc_names_exists(doc: str) -> None:
    text = (ROOT / doc).read_text(encoding="utf-8")
    missing = sorted({p for p in re.findall(r"\bgateway/[\w/]+(?:\.py)?", text) if not (ROOT / p).exists()})
    assert missing == []


def test_the_readme_layout_lists_every_package_of_the_gateway() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    layout = readme[readme.index("## Layout") :]
    layout = layout[: layout.find("\n## ", 1)] if "\n## " in layout[1:] else layout
    packages = sorted(p.name for p in (ROOT / "gateway").iterdir() if (p / "__init__.py").is_file())
    assert [p for p in packages if f"{p}/" not in layout] == []
