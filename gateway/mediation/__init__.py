"""The decisions the relay asks about. `interface` is the seam (`Forward`, `Refuse`, `Fetch`,
`Mediator`, `PassThrough`); `mediator` is the policy mediator that decides every message;
`sinks` is the one flow check of everything a client sends an upstream; `results` labels every
result (the sources) and `labelling` stamps labels and hands them to the session's provenance;
`inputs` mediates what an upstream asks of the client (sampling, elicitation, roots; 2026-07-28
`input_required`); `listings` pins, scans and hides what servers list.

Imports: errors, protocol, evidence, labels, screening, policy.
"""

__all__ = ["inputs", "interface", "labelling", "listings", "mediator", "results", "sinks"]
