"""gateway/policy/model.py: loading a policy file (errors name the file, the key path and what is
allowed), the policy hash, the shipped policies and the JSON Schema for editors."""

from __future__ import annotations

import copy
import tomllib
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from gateway.errors import EXIT_USAGE, ConfigError
from gateway.policy.engine import CompiledPolicy
from gateway.policy.model import PolicyError, PolicyFile, load_policy, parse_policy, policy_schema
from tests.unit.helpers import write_file

POLICIES = Path(__file__).resolve().parents[3] / "policies"
SHIPPED = ["default.toml", "strict.toml", "example.toml"]

RULE = """
[[rules]]
id = "r"
tools = ["srv.call"]
action = "allow"
"""


def _write(tmp_path: Path, text: str | bytes, name: str = "policy.toml") -> Path:
    return write_file(tmp_path / name, text)


def _load_error(tmp_path: Path, text: str | bytes) -> tuple[Path, PolicyError]:
    path = _write(tmp_path, text)
    with pytest.raises(PolicyError) as caught:
        load_policy(path)
    return path, caught.value


def _hash(text: str, tmp_path: Path, name: str = "policy.toml") -> str:
    return load_policy(_write(tmp_path, text, name)).policy_hash()


# -- loading errors --------------------------------------------------------------------------------

# fmt: off
LOAD_ERRORS = [
    pytest.param("version = 1\ncolour = 'red'\n", ["colour: unknown key",
                 "allowed here: version, name, mode, default, extra_arguments, unknown_methods, pins, rules"], id="unknown-top-level-key"),
    pytest.param("version = 1\n" + RULE + "colour = 'red'\n", ["rules.0.colour: unknown key",
                 "allowed here: id, tools, action, mode, reason, annotations, arguments"], id="unknown-key-in-a-rule"),
    pytest.param("version = 1\n" + RULE + "[rules.arguments.path]\nregex = 'x'\n", ["rules.0.arguments.path.regex: unknown key",
                 "allowed here:", "enum, prefix, path_prefix, pattern, max_length, minimum, maximum, fixed, optional"],
                 id="unknown-key-in-an-argument-constraint"),
    pytest.param("version = 1\n[pins]\nunknown = 'block'\n", ["pins.unknown: unknown key", "allowed here: unpinned, changed, suspect"],
                 id="unknown-key-in-pins"),
    pytest.param("version = 1\nmode = 'audit'\n", ["mode:", "'enforce' or 'shadow'"], id="bad-mode"),
    pytest.param("version = 1\n" + RULE + "mode = 'audit'\n", ["rules.0.mode:", "'enforce' or 'shadow'"], id="bad-rule-mode"),
    pytest.param("version = 1\ndefault = 'block'\n", ["default:", "'deny' or 'allow'"], id="bad-default"),
    pytest.param("version = 1\n[pins]\nunpinned = 'ask'\n", ["pins.unpinned:", "'block', 'allow-and-log' or 'trust-on-first-use'"],
                 id="bad-pins-value"),
    pytest.param("version = 2\n", ["version:", "should be 1"], id="bad-version"),
    pytest.param("name = 'no version'\n", ["version:", "required"], id="missing-version"),
    pytest.param("version = 1\n" + RULE.replace('"allow"', '"block"'), ["rules.0.action:", "'allow' or 'deny'"], id="bad-action"),
    pytest.param("version = 1\n" + RULE + RULE.replace('"srv.call"', '"srv.other"'),
                 ["rules[1].id", "'r' is used by an earlier rule", "must be unique"], id="duplicate-rule-ids"),
    pytest.param("version = 1\n" + RULE.replace('"srv.call"', '"delete"'), ["rules.0.tools:", "not server-qualified",
                 "'SERVER.delete' or '*.delete'"], id="unqualified-tool-pattern"),
    pytest.param("version = 1\n" + RULE.replace('"srv.call"', '"srv. call"'), ["rules.0.tools.0:"], id="tool-pattern-with-whitespace"),
    pytest.param("version = 1\n" + RULE.replace('id = "r"', 'id = "no spaces"'), ["rules.0.id:"], id="bad-rule-id"),
    pytest.param("version = 1\n" + RULE + "[rules.arguments.q]\npattern = '(?=a)a'\n", ["rules.0.arguments.q.pattern:",
                 "not a valid RE2 pattern", "no backreferences or lookaround"], id="re2-lookahead"),
    pytest.param("version = 1\n" + RULE + "[rules.arguments.q]\npattern = '(a)\\1'\n", ["rules.0.arguments.q.pattern:",
                 "not a valid RE2 pattern"], id="re2-backreference"),
    pytest.param("version = 1\n" + RULE + "[rules.arguments.n]\nminimum = 5\nmaximum = 1\n", ["rules.0.arguments.n:",
                 "minimum 5 is above maximum 1"], id="minimum-above-maximum"),
    pytest.param("version = 1\n" + RULE + "[rules.arguments.n]\nminimum = true\n", ["rules.0.arguments.n.minimum"], id="bool-minimum"),
    pytest.param("version = 1\n" + RULE + "[rules.arguments.n]\nminimum = inf\n", ["rules.0.arguments.n.minimum", "finite number"],
                 id="infinite-minimum"),
    pytest.param("version = 1\n" + RULE + "[rules.arguments.path]\npath_prefix = 'home/me'\n", ["rules.0.arguments.path.path_prefix"],
                 id="relative-path-prefix"),
    pytest.param("version = 1\n" + RULE + "[rules.arguments.region]\nfixed = 'eu'\nprefix = 'e'\n", ["rules.0.arguments.region:",
                 "a fixed argument takes no other constraint", "remove prefix"], id="fixed-with-another-constraint"),
    pytest.param("version = 1\n" + RULE + "[rules.arguments.region]\nfixed = 'eu'\noptional = true\n", ["rules.0.arguments.region:",
                 "remove optional"], id="fixed-with-optional"),
    pytest.param("version = 1\n" + RULE.replace('"allow"', '"deny"') + "[rules.arguments.region]\nfixed = 'eu'\n", ["rules.0:",
                 "'fixed' arguments (region) belong on allow rules"], id="fixed-on-a-deny-rule"),
    pytest.param("version = 1\n" + RULE + "[rules.arguments.region]\nfixed = nan\n", ["rules.0.arguments.region:",
                 "NaN and infinities are not allowed"], id="nan-in-fixed"),
    pytest.param("version = 1\n" + RULE + "[rules.arguments.region]\nfixed = { a = [1, -inf] }\n", ["rules.0.arguments.region:",
                 "fixed.a[1]: NaN and infinities are not allowed"], id="infinity-nested-in-fixed"),
    pytest.param("version = 1\n" + RULE + "[rules.arguments.f]\nschema = { type = 'objekt' }\n", ["rules.0.arguments.f.schema:",
                 "not a valid JSON Schema"], id="invalid-json-schema-fragment"),
    pytest.param("version = 1\n" + RULE + "annotations = { readonly = true }\n", ["rules.0.annotations", "'readOnlyHint'"],
                 id="unknown-annotation"),
    pytest.param("version = 1\n" + RULE + "annotations = { readOnlyHint = 'yes' }\n", ["rules.0.annotations.readOnlyHint"],
                 id="non-bool-annotation"),
    pytest.param("version = 1\n" + RULE + "[rules.arguments.e]\nenum = []\n", ["rules.0.arguments.e.enum"], id="empty-enum"),
    pytest.param("version = 1\n" + RULE.replace('tools = ["srv.call"]', "tools = []"), ["rules.0.tools"], id="no-tools"),
    pytest.param("version = 1\nrules = 'none'\n", ["rules:"], id="rules-not-a-list"),
]
# fmt: on


@pytest.mark.parametrize(("text", "fragments"), LOAD_ERRORS)
def test_a_loading_error_names_the_file_and_key_path_and_says_what_is_allowed(tmp_path: Path, text: str, fragments: list[str]) -> None:
    path, error = _load_error(tmp_path, text)
    message = str(error)
    assert message.startswith(f"{path}: ")
    for fragment in fragments:
        assert fragment in message


def test_a_policy_error_is_a_config_error_with_exit_code_2(tmp_path: Path) -> None:
    _, error = _load_error(tmp_path, "version = 1\nmode = 'audit'\n")
    assert isinstance(error, ConfigError)
    assert error.exit_code == EXIT_USAGE == 2


def test_an_unknown_key_in_an_argument_constraint_lists_the_keys_as_they_are_written(tmp_path: Path) -> None:
    # Regression: the hint listed the Python field name 'schema_', not the TOML key 'schema'.
    _, error = _load_error(tmp_path, "version = 1\n" + RULE + "[rules.arguments.path]\nregex = 'x'\n")
    allowed = str(error).split("allowed here: ", 1)[1].split(", ")
    assert "schema" in allowed
    assert "schema_" not in allowed


def test_invalid_toml_is_a_policy_error_naming_the_file(tmp_path: Path) -> None:
    path, error = _load_error(tmp_path, "version = 1\nrules = [\n")
    assert str(error).startswith(f"{path}: not valid TOML")


def test_a_duplicate_toml_key_is_a_policy_error(tmp_path: Path) -> None:
    path, error = _load_error(tmp_path, "version = 1\nversion = 1\n")
    assert str(error).startswith(f"{path}: not valid TOML")


def test_a_missing_file_is_a_policy_error_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "absent.toml"
    with pytest.raises(PolicyError, match="cannot read the policy file") as caught:
        load_policy(path)
    assert str(caught.value).startswith(f"{path}: ")
    assert caught.value.exit_code == 2


def test_a_directory_is_a_policy_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="cannot read the policy file") as caught:
        load_policy(tmp_path)
    assert str(caught.value).startswith(f"{tmp_path}: ")


def test_a_file_that_is_not_utf8_is_a_policy_error_naming_the_byte(tmp_path: Path) -> None:
    path, error = _load_error(tmp_path, b"version = 1\nname = '\xff'\n")
    assert str(error) == f"{path}: the policy file is not UTF-8 text (byte 20)"


def test_a_valid_file_loads_with_defaults_filled_in(tmp_path: Path) -> None:
    policy = load_policy(_write(tmp_path, "version = 1\n" + RULE))
    assert (policy.mode, policy.default, policy.extra_arguments) == ("enforce", "deny", "deny")
    assert (policy.pins.unpinned, policy.pins.changed, policy.pins.suspect) == ("block", "block-tool", "block")
    rule = policy.rules[0]
    assert (rule.id, rule.tools, rule.action, rule.mode, rule.annotations, rule.arguments) == ("r", ["srv.call"], "allow", None, {}, {})


def test_the_schema_key_of_an_argument_constraint_is_read(tmp_path: Path) -> None:
    policy = load_policy(_write(tmp_path, "version = 1\n" + RULE + "[rules.arguments.f]\nschema = { type = 'string' }\n"))
    assert policy.rules[0].arguments["f"].schema_ == {"type": "string"}


@pytest.mark.parametrize(
    "constraint",
    [
        pytest.param("enum = [nan]", id="nan-in-enum"),
        pytest.param("enum = [inf]", id="infinity-in-enum"),
        pytest.param("schema = { type = 'number', maximum = nan }", id="nan-in-schema-fragment"),
        pytest.param("fixed = 9007199254740993", id="integer-beyond-2-53-as-fixed"),
    ],
)
def test_a_number_the_policy_hash_cannot_represent_is_a_loading_error_naming_the_key(tmp_path: Path, constraint: str) -> None:
    # Regression: these loaded; CompiledPolicy.from_file then raised CanonicalizationError
    # (exit code 10, naming neither the file nor the key) when it hashes the policy, except the
    # NaN in a schema fragment, which compiles silently (hashed as null; see the next test).
    path = _write(tmp_path, "version = 1\n" + RULE + f"[rules.arguments.a]\n{constraint}\n")
    with pytest.raises(PolicyError) as caught:
        CompiledPolicy.from_file(load_policy(path))
    assert str(caught.value).startswith(f"{path}: rules.0.arguments.a")


# -- the policy hash ------------------------------------------------------------------------------

ORDERED = """\
version = 1
name = "p"
default = "deny"
[pins]
unpinned = "allow-and-log"
suspect = "block"
[[rules]]
id = "r"
tools = ["srv.call"]
action = "allow"
reason = "why"
[rules.arguments.a]
minimum = 1
maximum = 5
[rules.arguments.b]
prefix = "x"
"""

REORDERED = """\
default = "deny"
name = "p"
version = 1
[[rules]]
reason = "why"
action = "allow"
tools = ["srv.call"]
id = "r"
[rules.arguments.b]
prefix = "x"
[rules.arguments.a]
maximum = 5
minimum = 1
[pins]
suspect = "block"
unpinned = "allow-and-log"
"""

TERSE = """\
version = 1
[[rules]]
id = "r"
tools = ["srv.call"]
action = "allow"
[rules.arguments.a]
minimum = 1
"""

SPELLED_OUT = """\
version = 1
mode = "enforce"
default = "deny"
extra_arguments = "deny"
rules = [
  { id = "r", tools = ["srv.call"], action = "allow", annotations = {}, arguments = { a = { minimum = 1, optional = false } } },
]
[pins]
unpinned = "block"
changed = "block-tool"
suspect = "block"
"""


def test_the_policy_hash_does_not_depend_on_key_order(tmp_path: Path) -> None:
    assert _hash(ORDERED, tmp_path, "a.toml") == _hash(REORDERED, tmp_path, "b.toml")


def test_a_file_that_spells_out_the_defaults_hashes_like_one_that_omits_them(tmp_path: Path) -> None:
    assert _hash(TERSE, tmp_path, "a.toml") == _hash(SPELLED_OUT, tmp_path, "b.toml")


def test_the_policy_hash_is_a_sha256_hex_digest_and_the_compiled_policy_carries_it(tmp_path: Path) -> None:
    policy = load_policy(_write(tmp_path, ORDERED))
    digest = policy.policy_hash()
    assert len(digest) == 64 and set(digest) <= set("0123456789abcdef")
    assert CompiledPolicy.from_file(policy).hash == digest


def test_the_policy_hash_does_not_depend_on_the_file_name(tmp_path: Path) -> None:
    assert _hash(ORDERED, tmp_path, "a.toml") == _hash(ORDERED, tmp_path, "b.toml")


BASE: dict[str, Any] = {
    "version": 1,
    "rules": [
        {"id": "first", "tools": ["srv.read"], "action": "allow", "arguments": {"path": {"path_prefix": "/home"}}},
        {"id": "second", "tools": ["srv.write"], "action": "deny"},
    ],
}


def _mutated(path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    raw = copy.deepcopy(BASE)
    target = raw
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = value
    return raw


MUTATIONS = [
    pytest.param(("rules", 0, "id"), "renamed", id="rule-id"),
    pytest.param(("rules", 0, "tools"), ["srv.read", "srv.list"], id="rule-tools"),
    pytest.param(("rules", 0, "tools"), ["SRV.read"], id="rule-tools-case"),
    pytest.param(("rules", 0, "action"), "deny", id="rule-action"),
    pytest.param(("rules", 0, "mode"), "shadow", id="rule-mode"),
    pytest.param(("rules", 0, "mode"), "enforce", id="rule-mode-explicit"),
    pytest.param(("rules", 0, "reason"), "because", id="rule-reason"),
    pytest.param(("rules", 0, "annotations"), {"readOnlyHint": True}, id="rule-annotations"),
    pytest.param(("rules", 0, "arguments", "path", "path_prefix"), "/home/me", id="rule-constraint-value"),
    pytest.param(("rules", 0, "arguments", "path", "optional"), True, id="rule-constraint-optional"),
    pytest.param(("rules", 0, "arguments", "mode"), {"enum": ["r"]}, id="rule-new-constraint"),
    pytest.param(("rules", 0, "arguments", "path"), {"fixed": "/home"}, id="rule-constraint-to-fixed"),
    pytest.param(("rules", 1, "tools"), ["srv.write", "srv.delete"], id="second-rule-tools"),
    pytest.param(("rules",), list(reversed(BASE["rules"])), id="rule-order"),
    pytest.param(("rules",), BASE["rules"][:1], id="rule-removed"),
    pytest.param(("mode",), "shadow", id="policy-mode"),
    pytest.param(("default",), "allow", id="policy-default"),
    pytest.param(("extra_arguments",), "allow", id="policy-extra-arguments"),
    pytest.param(("pins",), {"changed": "block-server"}, id="policy-pins"),
]


@pytest.mark.parametrize(("path", "value"), MUTATIONS)
def test_the_policy_hash_changes_when_anything_in_the_policy_changes(path: tuple[Any, ...], value: Any) -> None:
    assert parse_policy(_mutated(path, value), "t").policy_hash() != parse_policy(BASE, "t").policy_hash()


def test_every_change_gives_a_different_policy_hash() -> None:
    hashes = {parse_policy(_mutated(*param.values), "t").policy_hash() for param in MUTATIONS}
    assert len(hashes) == len(MUTATIONS)


@pytest.mark.parametrize("name", SHIPPED)
def test_each_shipped_policy_loads_and_compiles(name: str) -> None:
    policy = load_policy(POLICIES / name)
    compiled = CompiledPolicy.from_file(policy)
    assert isinstance(policy, PolicyFile)
    assert policy.version == 1
    assert policy.rules
    assert len(compiled.rules) == len(policy.rules)
    assert compiled.hash == policy.policy_hash()


def test_the_shipped_policies_keep_the_documented_defaults() -> None:
    default, strict = load_policy(POLICIES / "default.toml"), load_policy(POLICIES / "strict.toml")
    assert (default.default, default.mode, default.pins.unpinned) == ("deny", "enforce", "trust-on-first-use")
    assert (strict.default, strict.mode, strict.pins.unpinned, strict.pins.changed) == ("deny", "enforce", "block", "block-server")


def test_the_policy_json_schema_is_a_valid_2020_12_schema() -> None:
    schema = policy_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"


@pytest.mark.parametrize("name", SHIPPED)
def test_the_policy_json_schema_accepts_each_shipped_policy(name: str) -> None:
    with (POLICIES / name).open("rb") as file:
        raw = tomllib.load(file)
    errors = [error.message for error in jsonschema.Draft202012Validator(policy_schema()).iter_errors(raw)]
    assert errors == []


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param({"version": 1, "colour": "red"}, id="unknown-key"),
        pytest.param({"version": 1, "mode": "audit"}, id="bad-mode"),
        pytest.param({"version": 1, "rules": [{"id": "r", "tools": ["srv.x"], "action": "allow", "colour": 1}]}, id="unknown-rule-key"),
        pytest.param({"version": 1, "rules": [{"id": "r", "tools": ["srv.x"], "action": "block"}]}, id="bad-action"),
    ],
)
def test_the_policy_json_schema_rejects_what_loading_rejects(raw: dict[str, Any]) -> None:
    assert not jsonschema.Draft202012Validator(policy_schema()).is_valid(raw)
    with pytest.raises(PolicyError):
        parse_policy(raw, "t")
