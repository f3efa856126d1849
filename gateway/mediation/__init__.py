"""The decisions the relay asks about. `interface` is the seam (`Forward`, `Refuse`, `Fetch`,
`Mediator`, `PassThrough`); `mediator` is the policy mediator that decides calls and server
requests, labels results and screens listings.

Imports: errors, protocol, evidence, labels, screening, policy.
"""

__all__ = ["interface", "mediator"]
