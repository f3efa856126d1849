"""What a server shows the model: descriptor hashes and field diffs (`descriptors`), the pin
lockfile (`pins`), the poisoning scan (`scan`, over its techniques in `characters` and
`phrases`, reporting `findings`), and the neutralisation of terminal escapes in forwarded text
(`neutralise`).

Imports: errors, trusted, protocol, evidence.
"""

__all__ = ["characters", "descriptors", "findings", "neutralise", "phrases", "pins", "scan"]
