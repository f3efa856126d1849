"""What a server shows the model: descriptor hashes and field diffs (`descriptors`), the pin
lockfile (`pins`), and the poisoning scan with terminal-escape neutralisation (`scan`).

Imports: errors, protocol, evidence.
"""

__all__ = ["descriptors", "pins", "scan"]
