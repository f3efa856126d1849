"""Every message a client sends that can reach an upstream is a sink. Pure.

One check for all of them (`SinkCheck.check`), so no method or member is a way around the flow
rules:

- a tool call's `arguments` are checked as today, each argument control or data as its tool's
  declaration says (`check_call`);
- every other member of every message's `params` (a tool call's `_meta`, `prompts/get`
  arguments, `completion/complete` values, `logging/setLevel`, a resource URI, a notification's
  reason or `_meta`) is checked as data sent to the server, one level into objects, and named by
  its path (`params._meta.note`, `params.argument.value`);
- the server is a sink of the class the policy declares for it (`[[servers]] class`), else of
  every class among the tools it listed, else (before it listed any) `egress`;
- answers to the server's requests (a client's response, or the `inputResponses` of a
  2026-07-28 retry) are checked as the arguments of a call to `SERVER.METHOD` (class `egress`
  unless a `[[tools]]` entry names it), as they always were.

Members of fixed syntax that the client, not the model, sets (request ids, progress tokens,
cursors, the protocol version, `_meta` keys in the protocol's `io.modelcontextprotocol/`
namespace) are checked for the values they contain (precise rules) but do
not carry the whole session's labels (coarse rules): a cancellation is never refused because
the session has seen untrusted data.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from gateway.labels import masks
from gateway.labels.masks import ActionClass
from gateway.labels.provenance import CLEAN, Provenance
from gateway.policy.engine import CompiledPolicy
from gateway.policy.flows import CompiledFlows, FlowVerdict, ToolFacts, argument_taints, check_flows
from gateway.protocol import methods

_NO_FLOWS: Final = FlowVerdict("allow")
#: Members the client's code sets, of fixed syntax: checked precisely, never coarsely. Also the
#: `_meta` keys of the protocol's own namespace (a 2026-07-28 request's version, client info and
#: capabilities), which every request of a modern client carries.
_STRUCTURAL: Final = frozenset(
    {"params.requestId", "params.progressToken", "params._meta.progressToken", "params.cursor", "params.protocolVersion"}
)
_PROTOCOL_META: Final = "params._meta." + methods.PROTOCOL_META


def _structural(path: str) -> bool:
    return path in _STRUCTURAL or path.startswith(_PROTOCOL_META)


#: Members of a tool call decided elsewhere: its name by the rules, its arguments per argument.
_CALL_OWN: Final = frozenset({"name", "arguments"})


def sink_members(method: str, params: Any) -> dict[str, Any]:
    """The members of a message's `params` checked as data, by path: every member, and the
    members of object-valued ones (`params._meta.note`), each as its key and its value (a secret
    used as a key reaches the server as surely as one used as a value). A tool call's `name`
    and `arguments`, and `inputResponses` (checked per server request) are left out."""
    if params is None:
        return {}
    if type(params) is not dict:
        return {"params": params}
    out: dict[str, Any] = {}
    for key, value in params.items():
        if (method == methods.TOOLS_CALL and key in _CALL_OWN) or key == methods.INPUT_RESPONSES_KEY:
            continue
        if type(value) is dict and value:
            for sub, member in value.items():
                out[f"params.{key}.{sub}"] = [sub, member]  # the key is sent too: it is checked with its value
        else:
            out[f"params.{key}"] = [key, value]
    return out


def sink_facts(action: ActionClass) -> ToolFacts:
    """A server as a sink of class `action`: every member is data sent to it."""
    return ToolFacts(action, True, False, 0, {}, (), None, (), ())


@dataclass(slots=True)
class SinkCheck:
    """The flow check of what one session sends one server (`server` is read at each check:
    it can be learned from `initialize`)."""

    flows: CompiledFlows
    provenance: Provenance
    policy: CompiledPolicy
    #: The classes of the server as a sink (see the module doc); called at each check.
    classes: Callable[[], tuple[ActionClass, ...]]

    def check_call(self, server: str, tool: str, facts: ToolFacts, arguments: Mapping[str, Any]) -> tuple[FlowVerdict, dict[str, Any]]:
        """A call's arguments, as the arguments of `server.tool`."""
        return self._verdict(server, tool, facts, arguments, data=False)

    def check(self, server: str, method: str, params: Any, input_methods: Mapping[str, str]) -> tuple[FlowVerdict, dict[str, Any]]:
        """Every member of a message's `params` but a call's name and arguments; then each of
        its `inputResponses` (`input_methods`: which server request each key answered)."""
        if not self.flows.flows or not self.provenance.mask:
            return _NO_FLOWS, {}
        members = sink_members(method, params)
        verdict: FlowVerdict = _NO_FLOWS
        data: dict[str, Any] = {}
        if members:
            for action in self.classes():
                verdict, data = self._verdict(server, method, sink_facts(action), members, data=True)
                if verdict.outcome != "allow":
                    break
        responses = params.get(methods.INPUT_RESPONSES_KEY) if type(params) is dict else None
        if verdict.outcome != "deny" and type(responses) is dict:
            for key, response in responses.items():
                asked = input_methods.get(str(key), methods.ELICITATION)
                answered = self.answer(server, asked, {f"params.inputResponses.{key}": response})
                if answered[0].outcome == "deny" or (answered[0].outcome != "allow" and verdict.outcome == "allow"):
                    verdict, data = answered
                if verdict.outcome == "deny":
                    break
        return verdict, data

    def answer(self, server: str, method: str, members: Mapping[str, Any]) -> tuple[FlowVerdict, dict[str, Any]]:
        """The client's answer to the server's request `method`, as arguments of `server.method`."""
        return self._verdict(server, method, self.flows.facts(server, method, None, None), members, data=False)

    def _verdict(
        self, server: str, tool: str, facts: ToolFacts, arguments: Mapping[str, Any], *, data: bool
    ) -> tuple[FlowVerdict, dict[str, Any]]:
        """The flow verdict, and what the flight log records of it: the labels of every member
        that carries any, the session's, and the exceptions used."""
        flows, provenance = self.flows, self.provenance
        if not flows.flows:
            return _NO_FLOWS, {}
        taints = argument_taints(provenance, arguments) if flows.precise else {}
        coarse = provenance.coarse()
        structural = {k: v for k, v in arguments.items() if _structural(k)} if data else {}
        if structural:
            arguments = {k: v for k, v in arguments.items() if not _structural(k)}
        shadow = self.policy.shadow
        verdict = check_flows(flows, server, tool, facts, arguments, taints, coarse, policy_shadow=shadow, data=data)
        if structural and verdict.outcome != "deny":
            fixed = check_flows(flows, server, tool, facts, structural, taints, CLEAN, policy_shadow=shadow, data=data)
            verdict = fixed if fixed.outcome == "deny" or verdict.outcome == "allow" else verdict
        recorded: dict[str, Any] = {"class": facts.action}
        carried = {name: masks.names_of(t.mask) for name, t in taints.items() if t.mask}
        if carried:
            recorded["member_labels" if data else "argument_labels"] = carried
        if provenance.mask:
            recorded["session_labels"] = masks.names_of(provenance.mask)
        if provenance.saturated:
            recorded["provenance"] = "saturated: checked coarsely"
        if verdict.exceptions:
            recorded["exceptions"] = list(verdict.exceptions)
        if verdict.outcome != "allow":
            recorded["flow"] = verdict.error_data()
        return verdict, recorded
