"""The decisions the relay asks about. `interface` is the seam (`Forward`, `Refuse`, `Fetch`,
`Mediator`, `PassThrough`); `mediator` is the policy mediator that decides calls and server
requests; `listings` pins, scans and hides what servers list; `labelling` labels results and
hands them to the session's provenance.

Imports: errors, protocol, evidence, labels, screening, policy.
"""

__all__ = ["interface", "labelling", "listings", "mediator"]
