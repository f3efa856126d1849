"""Information-flow state: label bit masks and the `_meta` form the client sees (`masks`), and the
per-session provenance that says which earlier results an argument came from (`provenance`,
over the value `fingerprints`). Pure.

Imports: errors, protocol.
"""

__all__ = ["decoding", "fingerprints", "masks", "provenance"]
