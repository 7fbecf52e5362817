"""The discrepancies of one ticket: its golden record against every checked system's copy, each differing
field decided once (`reconcile.resolve`) and turned into report items with what repairing them proposes."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from hub.core.canonical import FIELDS
from hub.core.errors import InvalidValue
from hub.core.mapping import FieldMapping, MappingSet, SystemMapping
from hub.core.model import FieldValue
from hub.core.ports import SourceRecord
from reconcile.compare import differing_fields
from reconcile.fingerprint import fingerprint
from reconcile.report import Value
from reconcile.resolve import GOLDEN, Candidate, Decision, resolve, same

Found = list[tuple[dict[str, Any], dict[str, Any] | None]]  # (report item, proposal)


@dataclass
class Copy:
    system: str
    local_id: str
    author: str
    modified_at: datetime | None
    fields: dict[str, Any]
    fingerprint: bytes


@dataclass
class TicketCheck:
    """What a run knows when it checks tickets: the mappings, the systems it read, its policies."""

    mappings: MappingSet
    checked: Sequence[str]
    skew: float
    dry_run: bool
    only: Sequence[str] = ()

    @staticmethod
    def copy(row: Mapping[str, Any]) -> Copy:
        return Copy(row["system"], row["local_id"], row["author"], row["modified_at"], row["fields"],
                     bytes(row["fingerprint"]))

    def __post_init__(self) -> None:
        self._names = {system: tuple(mapping.fields) for system, mapping in self.mappings.systems.items()}

    def expected_print(self, system: str, values: Mapping[str, Any]) -> bytes:
        """The fingerprint a copy in `system` has when it agrees with the golden values."""
        return fingerprint({name: values[name] for name in self._names[system] if name in values})

    def needs_look(self, golden: Mapping[str, Any], links: Mapping[str, list[str]],
                   prints: Mapping[str, list[bytes]]) -> bool:
        """Whether the ticket needs a closer look: a copy whose fingerprint is not the golden record's, or a
        checked system with neither a copy nor a link (it may be missing the ticket). Most tickets need none,
        and their copies' fields are never loaded."""
        for system in self.checked:
            mine = prints.get(system)
            if not mine:
                if not links.get(system):
                    return True
                continue
            expected = self.expected_print(system, golden)
            if any(p != expected for p in mine):
                return True
        return False

    def ticket(self, ticket_id: str, golden: Mapping[str, FieldValue], links: Mapping[str, list[str]],
                owed: Mapping[str, set[str]], copies: Mapping[str, list[Copy]]
                ) -> Found:
        """The discrepancies of one ticket, each as (report item, proposal)."""
        found: Found = []
        decisions: dict[str, Decision] = {}
        for system in self.checked:
            mapping = self.mappings.systems[system]
            mine = copies.get(system, [])
            if not mine:
                if not links.get(system):
                    found.extend(self._missing(ticket_id, system, mapping, golden, owed.get(system, set())))
                continue
            expected_print = self.expected_print(system, {name: fv.value for name, fv in golden.items()})
            for copy in mine:
                expected = {name: golden[name].value if name in golden else None for name in mapping.fields}
                actual = {name: copy.fields.get(name) for name in mapping.fields}
                for name in differing_fields(expected, actual, expected_print, copy.fingerprint):
                    if name in owed.get(system, set()):
                        continue  # the hub is about to write it there
                    if name not in decisions:
                        decisions[name] = resolve(name, self._candidates(name, golden.get(name), copies), self.skew)
                    found.extend(self._field(ticket_id, system, copy, name, decisions[name], golden.get(name)))
        return _unique(found)

    def _candidates(self, name: str, golden: FieldValue | None, copies: Mapping[str, list[Copy]]) -> list[Candidate]:
        found = []
        if golden is not None:
            p = golden.provenance
            found.append(Candidate(GOLDEN, p.system, golden.value, p.author, p.author_rank, p.system_rank,
                                   p.modified_at))
        for owner in sorted(self.mappings.owners(name)):
            if owner not in self.checked:
                continue
            mapping = self.mappings.systems[owner]
            for copy in copies.get(owner, []):
                if not mapping.fields[name].reads:
                    continue
                found.append(Candidate(owner, owner, copy.fields.get(name), copy.author,
                                       mapping.author_rank(copy.author), mapping.rank, copy.modified_at))
        if not found:  # nobody the rules weigh holds it: the golden record's (empty) value stands
            found.append(Candidate(GOLDEN, "", None, "", 0, 0, None))
        return found

    def _field(self, ticket_id: str, system: str, copy: Copy, name: str, decision: Decision,
               golden: FieldValue | None) -> Found:
        values = [_value(c, self.mappings.owners(name)) for c in decision.candidates]
        if not any(v.source == system for v in values):
            values.append(_value(Candidate(system, system, copy.fields.get(name), copy.author,
                                           self.mappings.systems[system].author_rank(copy.author),
                                           self.mappings.systems[system].rank, copy.modified_at, False),
                                 self.mappings.owners(name)))
        base: dict[str, Any] = {"ticket_id": ticket_id, "system": system, "local_id": copy.local_id,
                                "field": name, "values": [v.model_dump(mode="json") for v in values],
                                "responsible": copy.author}
        if decision.winner is None:
            return [({**base, "kind": "conflict", "rule": "flagged", "reason": decision.reason,
                      "action": "awaiting_review", "awaiting_review": True}, None)]
        winner = decision.winner
        base.update(winner=_value(winner, self.mappings.owners(name)).model_dump(mode="json"), rule=decision.rule)
        found: Found = []
        golden_value = golden.value if golden is not None else None
        if winner.source != GOLDEN and not same(winner.value, golden_value):
            # an owner changed it and the hub never heard: apply it, as its webhook would have
            proposal = {"apply": {"field": name, "value": winner.value, "system": winner.system,
                                  "author": winner.author, "author_rank": winner.author_rank,
                                  "system_rank": winner.system_rank, "modified_at": _iso(winner.modified_at)}}
            policy = self.mappings.systems[winner.system].fields[name].reconcile
            item = {**base, "system": winner.system, "kind": "missed_change", "responsible": winner.author,
                    "local_id": copy.local_id if winner.system == system else None,
                    "reason": f"{decision.reason}; the hub's record missed this change",
                    **_policy_action(policy, self.dry_run)}
            found.append((item, proposal))
        if not same(copy.fields.get(name), winner.value):
            owner = system in self.mappings.owners(name)
            mapping = self.mappings.systems[system].fields[name]
            kind = "conflict" if owner else "drift"
            if not mapping.writes or winner.value is None:
                why = (f"{system} is not written `{name}` (its mapping only reads it)" if not mapping.writes
                       else "the hub holds no value for it, and a copy is never erased")
                found.append(({**base, "kind": kind, "reason": f"{decision.reason}; {why}: reported",
                               "action": "reported"}, None))
            else:
                why = (f"{decision.reason}; {system}'s copy was changed by {copy.author}" if not owner
                       else decision.reason)
                item = {**base, "kind": kind, "reason": why, **_policy_action(mapping.reconcile, self.dry_run)}
                found.append((item, {"write": {"system": system, "field": name, "value": winner.value}}))
        return found

    def _missing(self, ticket_id: str, system: str, mapping: SystemMapping, golden: Mapping[str, FieldValue],
                 owed: set[str]) -> Found:
        """A system that is written fields of the ticket has no record of it (and no write to it is owed)."""
        wanted = {name: golden[name].value for name, fm in mapping.fields.items()
                  if fm.writes and name in golden and golden[name].value is not None}
        if not wanted or owed or self.only and ticket_id not in self.only:
            return []
        policy = "review" if any(mapping.fields[n].reconcile == "review" for n in wanted) else (
            "report" if all(mapping.fields[n].reconcile == "report" for n in wanted) else "repair")
        item = {"ticket_id": ticket_id, "system": system, "kind": "missing", "field": None, "rule": "ownership",
                "values": [], "reason": f"{system} is written {', '.join(sorted(wanted))} of this ticket and has no "
                f"record of it (no cross-reference, no write owed)", **_policy_action(policy, self.dry_run)}
        return [(item, {"write": {"system": system, "fields": wanted}})]


def canonical_copy(mapping: SystemMapping, record: SourceRecord) -> dict[str, Any]:
    """A system's record as canonical values, for every field its mapping maps; a value the mapping cannot
    translate is kept as it is (it will differ from the golden value and be reported)."""
    return CopyReader(mapping)(record)


_MEMO_LIMIT = 4096  # translated values remembered per field (enums, dates, amounts repeat across records)


class CopyReader:
    """`canonical_copy` for one system, prepared once per read: each field's path split once, plain text
    fields passed through as `FieldMapping.to_canonical` would, and the other fields' translations remembered
    per distinct value (a status, a carrier or a delivery date is translated once, not once per record)."""

    def __init__(self, mapping: SystemMapping):
        self._fields = []
        for name, fm in mapping.fields.items():
            plain = not fm.values and fm.scale is None and FIELDS[name].type in ("string", "text")
            self._fields.append((name, fm.system_field, tuple(fm.system_field.split(".")), fm, plain,
                                 dict[tuple[type, Any], Any]()))

    def __call__(self, record: SourceRecord) -> dict[str, Any]:
        fields: dict[str, Any] = {}
        source = record.fields
        for name, path, parts, fm, plain, memo in self._fields:
            if path in source:
                raw = source[path]
            else:
                node: Any = source
                for part in parts:
                    if not (type(node) is dict or isinstance(node, Mapping)) or part not in node:
                        break
                    node = node[part]
                else:
                    raw = node
                    fields[name] = self._canonical(fm, plain, memo, raw)
                continue
            fields[name] = self._canonical(fm, plain, memo, raw)
        return fields

    @staticmethod
    def _canonical(fm: FieldMapping, plain: bool, memo: dict[tuple[type, Any], Any], raw: Any) -> Any:
        kind = type(raw)
        if plain and kind is str:
            return raw  # what to_canonical gives a text field without a table, a scale or a date format
        hashable = kind in (str, int, bool, float) or raw is None
        if hashable and (kind, raw) in memo:
            return memo[kind, raw]
        try:
            value = fm.to_canonical(raw)
        except InvalidValue:
            return raw if isinstance(raw, (str, int, float, bool)) or raw is None else repr(raw)
        if hashable:
            if len(memo) >= _MEMO_LIMIT:
                memo.clear()
            memo[kind, raw] = value
        return value


def _policy_action(policy: str, dry_run: bool) -> dict[str, Any]:
    if policy == "review":
        return {"action": "awaiting_review", "awaiting_review": True}
    if policy == "report":
        return {"action": "reported"}
    return {"action": "would_repair" if dry_run else "repaired"}


def _value(candidate: Candidate, owners: Iterable[str]) -> Value:
    return Value(source=candidate.source, system=candidate.system, value=candidate.value, author=candidate.author,
                 author_rank=candidate.author_rank, system_rank=candidate.system_rank,
                 modified_at=candidate.modified_at, owner=candidate.source == GOLDEN or candidate.system in owners)


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def _unique(found: Found
            ) -> Found:
    """One missed-change item per (ticket, field), however many copies differed."""
    seen, out = set(), []
    for item, proposal in found:
        key = (item["kind"], item.get("ticket_id"), item.get("system"), item.get("field"))
        if item["kind"] == "missed_change" and key in seen:
            continue
        seen.add(key)
        out.append((item, proposal))
    return out
