"""Who may use `airlock serve`, checked in front of every request before any session is touched:
bearer tokens (read from a file, compared in constant time; the token's id, never the token, is
logged), the rule that listening beyond loopback needs tokens, and the per-token rate limit.
Pure, but for reading the token file."""

from __future__ import annotations

import hmac
import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from gateway.errors import ConfigError
from gateway.fronts.http.settings import ServeSettings, Token

TOKENS_ENV: Final = "AIRLOCK_TOKENS"


def load_tokens(path: Path) -> tuple[Token, ...]:
    """Tokens, one per line as `ID:TOKEN` (or a bare token, id `tN`); blank lines and `#`
    comments ignored. Several tokens allow rotation. Raises ConfigError."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the token file: {exc.strerror or exc}") from None
    tokens: list[Token] = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        token_id, sep, secret = line.partition(":")
        if not sep:
            token_id, secret = f"t{len(tokens) + 1}", line
        if len(secret) < 16:
            raise ConfigError(f"{path}:{number}: the token is shorter than 16 characters; use e.g. 'openssl rand -hex 32'")
        tokens.append(Token(token_id.strip(), secret.strip().encode()))
    if not tokens:
        raise ConfigError(f"{path}: no token in the file; write one per line as ID:TOKEN")
    return tuple(tokens)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_settings(settings: ServeSettings) -> None:
    """Fail closed: listening beyond loopback needs tokens."""
    if not settings.tokens and not (settings.allow_unauthenticated and is_loopback(settings.host)):
        if is_loopback(settings.host):
            raise ConfigError(
                "airlock serve needs bearer tokens (--token-file or AIRLOCK_TOKENS); on loopback only, "
                "--insecure-no-auth turns authentication off"
            )
        raise ConfigError(f"airlock serve on {settings.host} (beyond loopback) needs bearer tokens: pass --token-file")
    if settings.resume_events < 0:
        raise ConfigError(f"--resume-events {settings.resume_events}: give a count of events, or 0 to turn resumability off")
    if not (0 <= settings.session_idle_timeout <= 7 * 24 * 3600):  # NaN fails this too
        raise ConfigError(f"--session-idle-timeout {settings.session_idle_timeout}: give seconds up to a week, or 0 for never")


def authenticate(settings: ServeSettings, header: bytes | None) -> str | None:
    """The id of the token the Authorization header carries, or None. Every configured token
    is compared, in constant time, whichever matches."""
    if not settings.tokens:
        return "unauthenticated-loopback" if settings.allow_unauthenticated else None
    if header is None or header[:7].lower() != b"bearer ":
        return None
    offered = header[7:].strip()
    found = None
    for token in settings.tokens:
        if hmac.compare_digest(offered, token.secret):
            found = token.id
    return found


@dataclass(slots=True)
class TokenBucket:
    """`rate` requests per second on average, `burst` at once. Pure: the caller passes the time."""

    rate: float
    burst: int
    tokens: float = -1.0
    stamp: float = 0.0

    def take(self, now: float) -> float:
        """0 when a request may pass (and it is counted), else the seconds until one may."""
        if self.tokens < 0:
            self.tokens, self.stamp = float(self.burst), now
        self.tokens = min(float(self.burst), self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.rate
