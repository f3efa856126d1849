"""The embedded demo: a small notes server and a walkthrough that drives it through Airlock.

Imports: errors, evidence, labels.
"""

__all__ = ["server", "walkthrough"]
