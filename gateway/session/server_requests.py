"""Requests the upstreams of a hub session send the client (sampling, elicitation, roots), under
the hub's own ids: which upstream asked, under which id of its own, and which progress token its
request carries, so that the client's answer, a cancellation and the client's progress about
the request reach that upstream only. Pure.
"""

from __future__ import annotations

from typing import Any


class ServerRequests:
    """The open server-to-client requests of one hub session, by hub id."""

    def __init__(self) -> None:
        self._open: dict[str, tuple[int, Any, Any]] = {}  # hub id -> (upstream, its own id, its progress token)
        self._progress: dict[Any, int] = {}  # progress token of an upstream's request -> that upstream

    def open(self, hub_id: str, index: int, own_id: Any, token: Any) -> None:
        """Upstream `index` asked the client something under `own_id`, now known as `hub_id`."""
        token = token if type(token) in (int, str) else None
        self._open[hub_id] = (index, own_id, token)
        if token is not None:
            self._progress[token] = index

    def close(self, hub_id: Any) -> tuple[int, Any] | None:
        """(upstream, its own id) of the request the client answered as `hub_id`; None: no such request."""
        found = self._open.pop(hub_id, None) if type(hub_id) is str else None
        if found is None:
            return None
        self._forget_token(found[2])
        return found[0], found[1]

    def cancel(self, index: int, own_id: Any) -> str | None:
        """Upstream `index` gave up its request `own_id`: the hub id the client knows it by, if open."""
        for hub_id, (upstream, own, token) in self._open.items():
            if upstream == index and own == own_id:
                del self._open[hub_id]
                self._forget_token(token)
                return hub_id
        return None

    def progress_owner(self, token: Any) -> int | None:
        """The upstream whose request carries progress token `token`."""
        return self._progress.get(token) if type(token) in (int, str) else None

    def forget(self, index: int) -> None:
        """Upstream `index` is gone: its requests are no longer open."""
        self._open = {h: entry for h, entry in self._open.items() if entry[0] != index}
        self._progress = {t: i for t, i in self._progress.items() if i != index}

    def _forget_token(self, token: Any) -> None:
        if token is not None:
            self._progress.pop(token, None)
