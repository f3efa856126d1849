"""The pure parts of `airlock serve`: tokens, authentication, the rate limiter, message routing."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.errors import ConfigError
from gateway.fronts.http.auth import TokenBucket, authenticate, check_settings, is_loopback, load_tokens
from gateway.fronts.http.session import _Router
from gateway.fronts.http.settings import ServeSettings, Token
from gateway.upstream.child import ChildSpec

SPEC = ChildSpec(("true",), {}, None)
TOKENS = (Token("ci", b"0123456789abcdef-ci"), Token("laptop", b"0123456789abcdef-laptop"))


def test_token_files_take_id_token_lines_bare_tokens_and_comments(tmp_path: Path) -> None:
    path = tmp_path / "tokens"
    path.write_text("# rotation: both valid\nci:0123456789abcdef-ci\n\n0123456789abcdef-bare\n")
    assert load_tokens(path) == (Token("ci", b"0123456789abcdef-ci"), Token("t2", b"0123456789abcdef-bare"))


@pytest.mark.parametrize(
    ("text", "says"),
    [
        pytest.param("ci:short\n", "shorter than 16", id="short-token"),
        pytest.param("# nothing\n", "no token", id="empty"),
    ],
)
def test_a_bad_token_file_is_a_config_error_naming_the_line(tmp_path: Path, text: str, says: str) -> None:
    path = tmp_path / "tokens"
    path.write_text(text)
    with pytest.raises(ConfigError, match=says):
        load_tokens(path)


@pytest.mark.parametrize(
    ("header", "principal"),
    [
        pytest.param(b"Bearer 0123456789abcdef-ci", "ci", id="first-token"),
        pytest.param(b"bearer 0123456789abcdef-laptop", "laptop", id="second-token-any-case-scheme"),
        pytest.param(b"Bearer 0123456789abcdef-c", None, id="prefix-of-a-token"),
        pytest.param(b"Bearer 0123456789abcdef-ciX", None, id="token-plus-a-byte"),
        pytest.param(b"Basic 0123456789abcdef-ci", None, id="other-scheme"),
        pytest.param(b"0123456789abcdef-ci", None, id="no-scheme"),
        pytest.param(None, None, id="no-header"),
        pytest.param(b"Bearer ", None, id="empty-token"),
    ],
)
def test_only_a_configured_bearer_token_authenticates_and_its_id_names_the_principal(header: bytes | None, principal: str | None) -> None:
    assert authenticate(ServeSettings(SPEC, tokens=TOKENS), header) == principal


def test_without_tokens_only_an_explicit_loopback_opt_out_lets_requests_in() -> None:
    assert authenticate(ServeSettings(SPEC), b"Bearer anything") is None
    assert authenticate(ServeSettings(SPEC, allow_unauthenticated=True), None) == "unauthenticated-loopback"


@pytest.mark.parametrize(
    ("host", "tokens", "opt_out", "ok"),
    [
        pytest.param("127.0.0.1", TOKENS, False, True, id="loopback-with-tokens"),
        pytest.param("0.0.0.0", TOKENS, False, True, id="everywhere-with-tokens"),
        pytest.param("127.0.0.1", (), True, True, id="loopback-opted-out"),
        pytest.param("::1", (), True, True, id="ipv6-loopback-opted-out"),
        pytest.param("0.0.0.0", (), True, False, id="opt-out-refused-beyond-loopback"),
        pytest.param("192.168.1.5", (), False, False, id="lan-without-tokens"),
        pytest.param("127.0.0.1", (), False, False, id="loopback-without-tokens-or-opt-out"),
    ],
)
def test_serving_without_tokens_fails_closed(host: str, tokens: tuple[Token, ...], opt_out: bool, ok: bool) -> None:
    settings = ServeSettings(SPEC, host=host, tokens=tokens, allow_unauthenticated=opt_out)
    if ok:
        check_settings(settings)
    else:
        with pytest.raises(ConfigError):
            check_settings(settings)


def test_is_loopback_knows_names_and_addresses() -> None:
    assert is_loopback("localhost") and is_loopback("127.0.0.2") and is_loopback("::1")
    assert not is_loopback("0.0.0.0") and not is_loopback("example.com")


def test_the_token_bucket_allows_the_burst_then_the_rate_and_says_how_long_to_wait() -> None:
    bucket = TokenBucket(rate=2.0, burst=3)
    assert [bucket.take(0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.take(0.0) == pytest.approx(0.5)  # one token every 0.5 s
    assert bucket.take(0.5) == 0.0
    assert bucket.take(0.5) > 0
    assert bucket.take(10.0) == 0.0  # refilled, but never above the burst
    assert [bucket.take(10.0) for _ in range(3)][-1] > 0


def test_server_messages_follow_the_request_they_belong_to() -> None:
    router = _Router()
    router.client_request({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"_meta": {"progressToken": "p1"}}})
    router.client_request({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {}})
    progress = {"jsonrpc": "2.0", "method": "notifications/progress", "params": {"progressToken": "p1", "progress": 1}}
    assert router.related(progress) == 1  # by its token, not the latest request
    assert router.related({"jsonrpc": "2.0", "id": 9, "method": "sampling/createMessage", "params": {}}) == 2  # the latest open
    assert router.related({"jsonrpc": "2.0", "id": 2, "result": {}}) is None  # a response routes itself...
    assert router.related({"jsonrpc": "2.0", "method": "notifications/message", "params": {}}) == 1  # ...and closes its request
    router.related({"jsonrpc": "2.0", "id": 1, "result": {}})
    assert router.related(progress) is None  # nothing open: the standalone stream


def test_the_router_ignores_tokens_and_ids_that_cannot_be_keys_and_forgets_cancelled_requests() -> None:
    router = _Router()
    router.client_request({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"_meta": {"progressToken": [1]}}})
    router.client_request({"jsonrpc": "2.0", "id": [2], "method": "tools/call"})
    router.client_request({"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"_meta": {"progressToken": "p"}}})
    assert list(router.open) == [1, 3] and router.progress == {"p": 3}
    # an upstream's progress with a token that cannot be a key is routed like any notification, not a crash
    assert router.related({"jsonrpc": "2.0", "method": "notifications/progress", "params": {"progressToken": {}}}) == 3
    router.client_request({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 3}})
    assert list(router.open) == [1] and router.progress == {}
    # after the cancel, server-to-client messages no longer go to the cancelled request
    assert router.related({"jsonrpc": "2.0", "id": 9, "method": "sampling/createMessage"}) == 1
