"""Policies: the TOML file (`model`), its compiled form and the pure `decide` (`engine`), and
`airlock policy check`'s lints (`lint`)."""
