"""The policy language: the TOML file (`model`), its compiled form with the pure `decide` and
the one rule that combines a decision with a flow verdict (`engine`), flow rules and
declassification (`flows`), compiled input-schema checks (`schemacheck`), and `airlock policy
check`'s findings (`lint`). Pure, but for reading the file.

Imports: errors, protocol, config, tomlfile, evidence, labels, screening.
"""

__all__ = ["engine", "flows", "lint", "model", "schemacheck"]
