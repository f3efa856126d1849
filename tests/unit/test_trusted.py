"""gateway/trusted.py: the policy, the lockfile and the config are read only when no one but
their owner can change them (whoever can write them decides what the gateway allows, and the
config names the commands it runs), as a key file is read only when no one else can read it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from gateway.config import load_config
from gateway.errors import ConfigError
from gateway.policy.model import PolicyError, load_policy
from gateway.screening.pins import Lock, LockError

FILES: list[Any] = [
    pytest.param("policy.toml", "version = 1\n", load_policy, PolicyError, id="policy"),
    pytest.param("airlock.toml", "[gateway]\n", load_config, ConfigError, id="config"),
    pytest.param("airlock.lock", Lock().to_bytes().decode(), Lock.load, LockError, id="lockfile"),
]


@pytest.mark.parametrize(("name", "text", "load", "error"), FILES)
@pytest.mark.parametrize("mode", [0o664, 0o646, 0o666], ids=["group-writable", "world-writable", "both"])
def test_a_file_others_can_write_is_refused_with_the_fix(
    tmp_path: Path, name: str, text: str, load: Callable[[Path], Any], error: type[ConfigError], mode: int
) -> None:
    path = tmp_path / name
    path.write_text(text)
    path.chmod(mode)
    with pytest.raises(error) as caught:
        load(path)
    assert f"chmod go-w {path}" in caught.value.message


@pytest.mark.parametrize(("name", "text", "load", "error"), FILES)
@pytest.mark.parametrize("mode", [0o644, 0o600, 0o444])
def test_a_file_only_its_owner_can_write_is_read(
    tmp_path: Path, name: str, text: str, load: Callable[[Path], Any], error: type[ConfigError], mode: int
) -> None:
    path = tmp_path / name
    path.write_text(text)
    path.chmod(mode)
    load(path)
