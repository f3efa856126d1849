"""Information-flow state: label bit masks and the `_meta` form the client sees (`masks`), and the
per-session value fingerprints that say which earlier results an argument came from
(`provenance`). Pure.

Imports: errors, protocol.
"""

__all__ = ["masks", "provenance"]
