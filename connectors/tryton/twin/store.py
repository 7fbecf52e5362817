"""The Tryton twin's records and the rules every change goes through: create, read, search, write and the
workflow buttons, with trytond 8.2's checks in its order and its error texts (`model/modelstorage.py`,
`modelsql.py`, `modelview.py` button, `workflow.py` transition; `ir/message.xml` for the wording).

One call is one transaction: it runs under the twin's lock, takes one stamp for every `create_date` and
`write_date` it sets (trytond's NOW() is fixed per transaction), and leaves nothing behind when refused.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from connectors.tryton.twin.domain import DomainError, NotEmulated, check, matches, parse_order, sort_rows
from connectors.tryton.twin.models import COMPANY, META, MODELS, Field, Model, field_of
from connectors.tryton.twin.wire import timestamp_text
from hub.core.errors import TickethubError

Row = dict[str, Any]
FIELD_CLASSES = {"char": "Char", "text": "Text", "integer": "Integer", "float": "Float", "numeric": "Numeric",
                 "boolean": "Boolean", "date": "Date", "datetime": "Timestamp", "selection": "Selection"}


class TrytonError(TickethubError):
    """What the real server puts in `{"error": …}`: `error` is that value, e.g. ["UserError", [message, "",
    None]] or ["'nosuch'", ""] (a Python exception's text and an empty traceback)."""

    def __init__(self, error: list[Any]):
        super().__init__(f"Tryton sandbox twin refused the call: {error!r}")
        self.error = error


def user_error(message: str, description: str = "") -> TrytonError:
    return TrytonError(["UserError", [message, description, None]])


def key_error(name: Any) -> TrytonError:
    return TrytonError([repr(name) if isinstance(name, str) else str(name), ""])


@dataclass
class Actor:
    """Who makes a call: the user id and what the button rules and access checks need of them."""

    id: int
    admin: bool = False
    can_write: bool = True
    companies: tuple[int, ...] = (COMPANY,)


class Store:
    def __init__(self) -> None:
        self.tables: dict[str, dict[int, Row]] = {name: {} for name in MODELS}
        self.sequences: dict[str, int] = {}

    # -- reading -----------------------------------------------------------------------------------

    def row(self, model: str, record_id: Any) -> Row | None:
        return self.tables[model].get(record_id) if isinstance(record_id, int) else None

    def rec_name(self, model: str, record_id: Any) -> str:
        """A record's name; "<model>#<field>" names it by that field instead (a unit by its symbol)."""
        model, _, by = model.partition("#")
        row = self.row(model, record_id)
        if row is None:
            return ""
        return str(row.get(by) or "") if by else MODELS[model].rec_name(self.rec_name, row)

    def value(self, model: Model, row: Row, name: str) -> Any:
        """A field's value as the real one reads it back (booleans as 0/1: SQLite has no boolean type)."""
        if name == "rec_name":
            return model.rec_name(self.rec_name, row)
        if name == "last_modified_at":
            return row["write_date"] or row["create_date"]
        if model.name == "sale.sale" and name == "shipments":  # those its confirm made (no stock moves here)
            return sorted(i for i, r in self.tables["stock.shipment.out"].items() if r.get("_sale") == row["id"])
        spec = model.fields.get(name)
        if spec is not None and spec.contact:
            mechanisms = self.tables["party.contact_mechanism"]
            return next((mechanisms[i]["value"] for i in self.value(model, row, "contact_mechanisms")
                         if mechanisms[i]["type"] == name and mechanisms[i]["active"]), "")
        if spec is not None and spec.type == "one2many":
            children = self.tables[str(spec.relation)].items()
            return sorted(i for i, r in children if r.get(str(spec.inverse)) == row["id"])
        if model.name == "sale.sale" and name in ("untaxed_amount", "total_amount") and self.value(model, row, "lines"):
            lines = [self.tables["sale.line"][i] for i in self.value(model, row, "lines")]
            total = sum((Decimal(str(line.get("quantity") or 0)) * (line.get("unit_price") or 0)
                         for line in lines if line["type"] == "line"), Decimal(0))
            return total.quantize(Decimal("0.01"))  # the currency's 2 digits
        value = row.get(name)
        if isinstance(value, bool):
            return int(value)
        return value

    def read(self, model_name: str, ids: Any, names: Any) -> list[Row]:
        model = MODELS[model_name]
        if not isinstance(ids, list):
            raise TrytonError([f"'{type(ids).__name__}' object is not iterable", ""])
        if names is None:
            raise TrytonError(["'NoneType' object is not iterable", ""])
        rows = self._existing(model, ids, "read")
        return [self._fields(model, row, list(names)) for row in sorted(rows, key=lambda r: r["id"])]

    def _fields(self, model: Model, row: Row, names: list[str]) -> Row:
        related: dict[str, list[str]] = {}
        out: Row = {"id": row["id"]}
        for name in names:
            head, dot, rest = str(name).partition(".")
            spec = field_of_or_error(model, head) if head != "_timestamp" else None
            if dot:
                if spec is None or spec.relation is None:
                    kind = FIELD_CLASSES.get(spec.type if spec else "char", "Char")
                    raise TrytonError([f"'{kind}' object has no attribute 'get_target'", ""])
                related.setdefault(head, []).append(rest)
            elif head == "_timestamp":
                out["_timestamp"] = timestamp_text(row["write_date"] or row["create_date"])
            else:
                out[head] = self.value(model, row, head)
        for head, rest_names in related.items():
            spec = field_of(model, head)
            target = MODELS[str(spec.relation)]
            for rest in rest_names:  # unknown names fail before any row is read, as real
                field_of_or_error(target, rest.partition(".")[0])
            value = self.value(model, row, head)
            if isinstance(value, list):
                out[head + "."] = [self._fields(target, self.tables[target.name][i], rest_names) for i in value]
            else:
                linked = self.row(target.name, value)
                out[head + "."] = None if linked is None else self._fields(target, linked, rest_names)
        return out

    def search(self, model_name: str, domain: Any, offset: Any = 0, limit: Any = None, order: Any = None,
               active_test: bool = True) -> list[int]:
        model = MODELS[model_name]
        check(model, domain)
        keys = parse_order(model, order)
        if active_test and "active" in model.fields:
            domain = [domain, ("active", "=", True)]
        rows = [r for r in self.tables[model_name].values()
                if matches(model, r, domain, self._resolve, self.row)]
        rows = sort_rows(model, rows, keys, lambda r, name: self._order_value(model, r, name))
        start = int(offset or 0)
        return [r["id"] for r in rows[start:None if limit is None else start + int(limit)]]

    def snapshot(self, model_name: str, row: Row) -> Row:
        """A stored row with what the twin computes for it (rec_name, last_modified_at, x2many ids, a sale's
        totals, a party's phone and email), for tests to inspect."""
        model = MODELS[model_name]
        computed = ["rec_name", "last_modified_at", *(n for n, f in model.fields.items()
                                                      if f.computed or f.contact or f.type == "one2many")]
        if model_name == "sale.sale":
            computed += ["untaxed_amount", "total_amount"]
        return {**row, **{name: self.value(model, row, name) for name in computed}}

    def _resolve(self, model: Model, row: Row, name: str) -> Any:
        value = self.value(model, row, name)
        return bool(value) if model.fields.get(name, Field("char", "")).type == "boolean" else value

    def _order_value(self, model: Model, row: Row, name: str) -> Any:
        head, _, rest = name.partition(".")
        spec = field_of(model, head)
        if spec.type == "many2one" and spec.relation in MODELS:  # trytond orders a Many2One by its target
            target = self.row(str(spec.relation), row.get(head))
            if target is None:
                return None
            return self._order_value(MODELS[str(spec.relation)], target, rest) if rest else \
                MODELS[str(spec.relation)].rec_name(self.rec_name, target)
        return self.value(model, row, head)

    # -- writing -----------------------------------------------------------------------------------

    def create(self, model_name: str, vlist: Any, actor: Actor, stamp: dt.datetime, context: Mapping[str, Any],
               trusted: bool = False) -> list[int]:
        model = MODELS[model_name]
        if not isinstance(vlist, list):
            raise TrytonError([f"'{type(vlist).__name__}' object has no attribute 'copy'", ""])
        self._check_access(model, actor, trusted)
        ids = []
        for values in vlist:
            row: Row = {"id": self._next_id(model_name), "create_date": stamp, "create_uid": actor.id,
                        "write_date": None, "write_uid": None}
            for name, spec in model.fields.items():
                if not spec.computed:
                    row[name] = spec.default
            if model.company_bound:
                row["company"] = context.get("company")
            if model_name == "party.party":
                row["code"] = str(self.next_number("party.party"))
            children: dict[str, list[Any]] = {}
            contacts: dict[str, Any] = {}
            for name, value in dict(values).items():
                spec = field_of_or_error(model, name)
                if not trusted and (spec.computed or not spec.setter or name in META):
                    raise _no_setter(model, spec)
                if spec.type == "one2many":
                    children.setdefault(name, []).extend(value or [])
                elif spec.contact:
                    contacts[name] = convert(spec, value)
                else:
                    row[name] = convert(spec, value)
            for name in sorted(contacts):  # party.py's setter makes a contact mechanism; setters run by name
                if contacts[name]:
                    children.setdefault("contact_mechanisms", []).append(
                        ["create", [{"type": name, "value": contacts[name]}]])
            if not trusted:
                for name in values:
                    self._check_editable(model, row, name, creating=True)
            if model.company_bound and row.get("company") not in actor.companies:
                raise user_error(f'You are not allowed to create records of "{model.label}" because they fail on '
                                 "at least one of these rules:\nUser in companies", "Within groups: ")
            self._check_values(model, row)
            if model.written_at_create:
                row["write_date"], row["write_uid"] = stamp, actor.id
            self.tables[model_name][row["id"]] = row
            for name, operations in children.items():
                self._one2many(model, row, name, operations, actor, stamp, context)
            ids.append(row["id"])
        return ids

    def _one2many(self, model: Model, row: Row, name: str, operations: Any, actor: Actor, stamp: dt.datetime,
                  context: Mapping[str, Any]) -> None:
        """A One2Many value: [["create", [values…]], ["write", ids, values], ["delete", ids], ["add", ids],
        ["remove", ids]] applied in order to the records whose inverse Many2One points at `row`."""
        spec = field_of(model, name)
        target, inverse = str(spec.relation), str(spec.inverse)
        for operation in operations or []:
            kind, *args = operation
            if kind == "create":
                self.create(target, [{**values, inverse: row["id"]} for values in args[0]], actor, stamp, context)
            elif kind == "write":
                self.write(target, args[0], args[1], actor, stamp, {})
            elif kind in ("delete", "remove", "add"):
                for child in self._existing(MODELS[target], args[0], "read"):
                    if kind == "delete":
                        del self.tables[target][child["id"]]
                    else:
                        child[inverse] = row["id"] if kind == "add" else None
            else:
                raise NotEmulated(f"the One2Many operation {kind!r}")

    def write(self, model_name: str, ids: Any, values: Any, actor: Actor, stamp: dt.datetime,
              timestamps: Mapping[str, Any], trusted: bool = False) -> None:
        model = MODELS[model_name]
        rows = self._existing(model, ids, "write to")
        self._check_access(model, actor, trusted)
        if not isinstance(values, dict):
            raise TrytonError([f"'{type(values).__name__}' object has no attribute 'items'", ""])
        specs = {name: field_of_or_error(model, name) for name in values}
        for name, spec in specs.items():
            if trusted:
                continue
            if spec.computed or not spec.setter:
                raise _no_setter(model, spec)
            if spec.readonly:
                raise user_error(f'You are not allowed to modify the field "{spec.label}" of "{model.label}".')
            for row in rows:
                self._check_editable(model, row, name, creating=False)
        self.check_timestamps(model, rows, timestamps)
        plain = {name: spec for name, spec in specs.items() if spec.type != "one2many"}
        for row in rows:
            self._check_values(model, {**row, **{name: convert(spec, values[name]) for name, spec in plain.items()}})
        for row in rows:
            row.update({name: convert(spec, values[name]) for name, spec in plain.items()})
            row["write_date"], row["write_uid"] = stamp, actor.id
            for name in specs.keys() - plain.keys():
                self._one2many(model, row, name, values[name], actor, stamp, {"company": COMPANY})

    def check_timestamps(self, model: Model, rows: list[Row], timestamps: Mapping[str, Any]) -> None:
        """`_timestamp` in the context: {"<model>,<id>": text}; a None value or another record's key is
        ignored; a text that differs from the record's current one is ConcurrencyException."""
        for row in rows:
            sent = timestamps.get(f"{model.name},{row['id']}")
            if sent is not None and str(sent) != timestamp_text(row["write_date"] or row["create_date"]):
                raise TrytonError(["ConcurrencyException", "Records were modified in the meanwhile"])

    def button(self, model_name: str, ids: Any, name: str, actor: Actor, stamp: dt.datetime, today: dt.date,
               timestamps: Mapping[str, Any], trusted: bool = False) -> None:
        model = MODELS[model_name]
        button = model.buttons[name]
        rows = self._existing(model, ids, "read")
        self._check_access(model, actor, trusted)
        if not trusted:
            facts = {"admin": actor.admin}
            for row in rows:
                view = {**row, **{name: self.value(model, row, name) for name in ("lines", "untaxed_amount")
                                  if name in model.fields}}
                if not button.allowed(view, facts):
                    raise user_error(f'You can not call "{name}" on "{model.rec_name(self.rec_name, row)}" of '
                                     f'"{model.label}".')
        if model_name == "sale.sale" and name == "quote":
            for row in rows:
                for address, kind in (("invoice_address", "an invoice"), ("shipment_address", "a shipment")):
                    if row[address] is None:
                        raise user_error(f'To get a quote for sale "{model.rec_name(self.rec_name, row)}" you must '
                                         f"enter {kind} address.")
        moving = [r for r in rows if (button.only_from is None or r["state"] in button.only_from)
                  and (r["state"], button.target) in model.transitions and r["state"] != button.target]
        self.check_timestamps(model, moving, timestamps)
        for row in moving:
            row["state"] = button.target
            if name in model.numbered_on and not row.get("number"):
                row["number"] = str(self.next_number(model_name))
            if name == "do":
                row["effective_date"] = row.get("effective_date") or today
            row["write_date"], row["write_uid"] = stamp, actor.id
            if model_name == "sale.sale" and name == "confirm":
                self._process_sale(row, actor, stamp, today)

    def _process_sale(self, sale: Row, actor: Actor, stamp: dt.datetime, today: dt.date) -> None:
        """confirm queues `process`, which with no worker runs in the same transaction: the sale goes on to
        processing, and one waiting shipment per sale when shipped on order (a `stock.shipment.out` with
        no reference, its moves not emulated)."""
        sale.update(state="processing", sale_date=sale.get("sale_date") or today)
        if sale["shipment_method"] != "order":
            return
        [shipment_id] = self.create("stock.shipment.out", [{
            "customer": sale["party"], "delivery_address": sale["shipment_address"], "company": sale["company"],
            "warehouse": sale["warehouse"], "warehouse_output": 2, "warehouse_storage": 3}],
            actor, stamp, {"company": sale["company"]}, trusted=True)
        shipment = self.tables["stock.shipment.out"][shipment_id]
        shipment.update(state="waiting", number=str(self.next_number("stock.shipment.out")), _sale=sale["id"],
                        write_date=stamp, write_uid=actor.id)
        sale["shipment_state"] = "waiting"

    # -- checks --------------------------------------------------------------------------------------

    def next_number(self, model_name: str) -> int:
        self.sequences[model_name] = self.sequences.get(model_name, 0) + 1
        return self.sequences[model_name]

    def _next_id(self, model_name: str) -> int:
        return max(self.tables[model_name], default=0) + 1

    def _existing(self, model: Model, ids: Any, verb: str) -> list[Row]:
        if not isinstance(ids, list):
            ids = [ids]
        missing = [i for i in ids if self.row(model.name, i) is None]
        if missing:
            raise user_error(f'You are trying to {verb} records "{", ".join(map(str, missing))}" of '
                             f'"{model.label}" that don\'t exist.')
        return [self.tables[model.name][i] for i in dict.fromkeys(ids)]

    def _check_access(self, model: Model, actor: Actor, trusted: bool) -> None:
        if not trusted and not actor.can_write and not actor.admin:
            raise user_error(f'You are not allowed to access "{model.label}".', "Within groups: ")

    def _check_editable(self, model: Model, row: Row, name: str, creating: bool) -> None:
        spec = model.fields.get(name)
        if spec is None:
            return
        if (spec.create_only and not creating) or (spec.editable_in is not None
                                                   and row.get("state") not in spec.editable_in):
            raise user_error(f'You are not allowed to modify the field "{spec.label}" in record '
                             f'"{model.rec_name(self.rec_name, row)}" of "{model.label}".')

    def _check_values(self, model: Model, row: Row) -> None:
        for name, spec in model.fields.items():
            value = row.get(name)
            if spec.required and value in (None, ""):
                raise user_error(f'A value is required for field "{spec.label}" in record '
                                 f'"{model.rec_name(self.rec_name, row)}" of "{model.label}".')
            if value is None:
                continue
            if spec.type == "selection" and value not in spec.selection:
                raise user_error(f'The value "{value}" for field "{spec.label}" in record '
                                 f'"{model.rec_name(self.rec_name, row)}" of "{model.label}" is not one of the '
                                 "allowed options.")
            if spec.type == "many2one" and self.row(str(spec.relation), value) is None:
                raise user_error(f'The value "{value}" for field "{spec.label}" in record '
                                 f'"{model.rec_name(self.rec_name, row)}" of "{model.label}" is not valid '
                                 "according to its domain.")


def field_of_or_error(model: Model, name: str) -> Field:
    try:
        return field_of(model, name)
    except KeyError:
        raise key_error(name) from None


def _no_setter(model: Model, spec: Field) -> TrytonError:
    if spec.readonly and (spec.computed or spec in META.values()):
        return user_error(f'You are not allowed to modify the field "{spec.label}" of "{model.label}".')
    return TrytonError([f'Missing setter function for field "{spec.label}" in "{model.label}".', ""])


def convert(spec: Field, value: Any) -> Any:
    """A value as the column stores it; a bad one fails as Python's conversion does in trytond."""
    if value is None or value is False and spec.type not in ("boolean", "integer", "float", "numeric"):
        return None
    try:
        if spec.type in ("integer", "many2one"):
            return int(value)
        if spec.type == "float":
            return float(value)
        if spec.type == "numeric":
            return value if isinstance(value, Decimal) else Decimal(str(value))
        if spec.type == "boolean":
            return bool(value)
    except (TypeError, ValueError, ArithmeticError) as exc:
        raise TrytonError([str(exc), ""]) from None
    if spec.type in ("char", "text") and not isinstance(value, str):  # trytond strips a Char's value
        raise TrytonError([f"'{type(value).__name__}' object has no attribute 'strip'", ""])
    if spec.type == "date" and isinstance(value, str):
        return dt.date.fromisoformat(value)
    if spec.type == "datetime" and isinstance(value, str):
        return dt.datetime.fromisoformat(value)
    return value


__all__ = ["Actor", "DomainError", "Store", "TrytonError"]
