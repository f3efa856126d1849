"""gateway/trusted.py: the policy, the lockfile and the config are read only when no one but
their owner can change them (whoever can write them decides what the gateway allows, and the
config names the commands it runs), as a key file is read only when no one else can read it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from gateway import trusted
from gateway.config import load_config
from gateway.errors import ConfigError
from gateway.policy.model import PolicyError, load_policy
from gateway.screening.pins import Lock, LockError


def _file(monkeypatch: pytest.MonkeyPatch, path: Path, text: str, mode: int, *, shared: bool) -> Path:
    """`path` holding `text` with `mode`, its group taken as shared with other users or not."""
    monkeypatch.setattr(trusted, "shared_group", lambda info: shared)
    path.write_text(text)
    path.chmod(mode)
    return path


FILES: list[Any] = [
    pytest.param("policy.toml", "version = 1\n", load_policy, PolicyError, id="policy"),
    pytest.param("airlock.toml", "[gateway]\n", load_config, ConfigError, id="config"),
    pytest.param("airlock.lock", Lock().to_bytes().decode(), Lock.load, LockError, id="lockfile"),
]


@pytest.mark.parametrize(("name", "text", "load", "error"), FILES)
@pytest.mark.parametrize(
    ("mode", "shared"),
    [(0o664, True), (0o646, False), (0o666, False), (0o646, True)],
    ids=["group-writable-shared-group", "world-writable", "both-in-a-private-group", "world-writable-shared-group"],
)
def test_a_file_others_can_write_is_refused_with_the_fix(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    name: str,
    text: str,
    load: Callable[[Path], Any],
    error: type[ConfigError],
    mode: int,
    shared: bool,
) -> None:
    path = _file(monkeypatch, tmp_path / name, text, mode, shared=shared)
    with pytest.raises(error) as caught:
        load(path)
    assert f"chmod go-w {path}" in caught.value.message


@pytest.mark.parametrize(("name", "text", "load", "error"), FILES)
@pytest.mark.parametrize(("mode", "shared"), [(0o644, True), (0o600, True), (0o444, True), (0o664, False)])
def test_a_file_only_its_owner_can_write_is_read(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    name: str,
    text: str,
    load: Callable[[Path], Any],
    error: type[ConfigError],
    mode: int,
    shared: bool,
) -> None:
    """Group-writable in a user-private group (umask 002) is the owner's alone."""
    load(_file(monkeypatch, tmp_path / name, text, mode, shared=shared))


@pytest.mark.parametrize(
    ("owner_gid", "members", "others_with_it_as_primary", "shared"),
    [
        pytest.param(100, [], [], False, id="user-private-group"),
        pytest.param(100, ["me"], [], False, id="owner-listed-as-its-member"),
        pytest.param(100, ["me", "eve"], [], True, id="another-member"),
        pytest.param(100, [], ["eve"], True, id="another-user-whose-primary-group-it-is"),
        pytest.param(5, [], [], True, id="not-the-owners-primary-group"),
    ],
)
def test_a_group_is_private_only_when_it_is_the_owners_own_and_no_one_elses(
    monkeypatch: pytest.MonkeyPatch, owner_gid: int, members: list[str], others_with_it_as_primary: list[str], shared: bool
) -> None:
    users = [SimpleNamespace(pw_name="me", pw_uid=1000, pw_gid=owner_gid)]
    users += [SimpleNamespace(pw_name=name, pw_uid=2000 + i, pw_gid=100) for i, name in enumerate(others_with_it_as_primary)]
    monkeypatch.setattr(trusted.grp, "getgrgid", lambda gid: SimpleNamespace(gr_mem=members))
    monkeypatch.setattr(trusted.pwd, "getpwuid", lambda uid: users[0])
    monkeypatch.setattr(trusted.pwd, "getpwall", lambda: users)
    assert trusted.shared_group(SimpleNamespace(st_uid=1000, st_gid=100)) is shared  # type: ignore[arg-type]


def test_a_group_that_cannot_be_looked_up_is_taken_as_shared(monkeypatch: pytest.MonkeyPatch) -> None:
    def missing(gid: int) -> None:
        raise KeyError(gid)

    monkeypatch.setattr(trusted.grp, "getgrgid", missing)
    assert trusted.shared_group(SimpleNamespace(st_uid=1000, st_gid=100)) is True  # type: ignore[arg-type]
