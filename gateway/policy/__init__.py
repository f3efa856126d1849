"""The policy language: the TOML file (`model`), its compiled form with the pure `decide`, the
one rule that combines a decision with a flow verdict and the one for server requests
(`engine`), compiled argument constraints (`constraints`), flow rules and declassification
(`flows`), compiled input-schema checks (`schemacheck`), and `airlock policy check`'s findings
(`lint`). Pure, but for reading the file.

Imports: errors, protocol, config, tomlfile, evidence, labels, screening.
"""

__all__ = ["constraints", "engine", "flows", "lint", "model", "schemacheck"]
