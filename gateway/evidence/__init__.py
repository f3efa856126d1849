"""Everything that is signed: the one producer of signed bytes (`canonical`), flight-log entries
as values (`entry`), the writer with write-ahead, chain and batch signatures (`flightlog`),
Ed25519 keys (`signing`), RFC 6962 trees (`merkle`), key rotation manifests (`rotation`), offline
verification (`verify`) and why evidence fails it (`failures`), standalone receipts
(`receipt`) and reading a log for display (`reader`).
The live gateway and `airlock verify` use the same verifier.

Imports: errors.
"""

__all__ = ["canonical", "entry", "failures", "flightlog", "merkle", "reader", "receipt", "rotation", "signing", "verify"]
