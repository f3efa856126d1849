"""Everything that is signed: the one producer of signed bytes (`canonical`), the typed flight-log
entry (`entry`), the writer with write-ahead and chain (`flightlog`), its batch signatures and
fsync thread (`batches`), Ed25519 keys (`signing`), RFC 6962 trees (`merkle`), key rotation
manifests (`rotation`), offline verification (`verify`) and why evidence fails it (`failures`),
standalone receipts (`receipt`) and reading a log for display (`reader`).
The live gateway and `airlock verify` use the same verifier.

Imports: errors.
"""

__all__ = ["batches", "canonical", "entry", "failures", "flightlog", "merkle", "reader", "receipt", "rotation", "signing", "verify"]
