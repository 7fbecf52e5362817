"""What the Tryton twin knows of each model: fields (names, types, labels as the real `fields_get` gives them),
which may be written when, default orders, record names, and the workflow buttons with their transitions.

Copied from trytond 8.2 and its modules (`production/production.py`, `stock/shipment.py`, `sale/sale.py`,
`party/party.py`, `res/user.py`, `product/product.py`, `carrier/carrier.py`); a field the hub does not need
is left out, and reading it answers the real one's unknown-field error.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from types import MappingProxyType
from typing import Any

Row = dict[str, Any]
RecName = Callable[[Callable[[str, Any], str], Row], str]  # (rec_name of (model, id), row) -> text
UserFacts = Mapping[str, Any]  # {"admin": bool}


@dataclass(frozen=True)
class Field:
    type: str  # char text integer float numeric boolean date datetime selection many2one one2many many2many
    label: str
    relation: str | None = None
    inverse: str | None = None  # a One2Many's Many2One on the target
    required: bool = False
    readonly: bool = False  # never written through RPC ("… the field "State" of "Production".")
    editable_in: tuple[str, ...] | None = None  # states in which RPC may write it (None: any)
    selection: tuple[str, ...] = ()
    default: Any = None
    setter: bool = True  # False: a function field the real one has no setter for
    create_only: bool = False  # a function field with a setter at create, refused on write (party phone)
    contact: bool = False  # a party's first contact mechanism of this type (phone, email)
    searchable: bool = True
    computed: bool = False  # not stored: the twin derives it (sale `shipments`)


@dataclass(frozen=True)
class Button:
    """A workflow button: refused ("You can not call …") when `allowed` says no, else each record whose
    (state, target) is a transition moves to `target`; the others are left as they are, silently, as real."""

    target: str | None
    allowed: Callable[[Row, UserFacts], bool] = lambda row, user: True
    only_from: tuple[str, ...] | None = None  # assign_try/assign_force: records in these states only


@dataclass(frozen=True)
class Model:
    name: str
    label: str
    fields: Mapping[str, Field]
    rec_name: RecName
    order: tuple[tuple[str, str], ...] = (("id", "ASC"),)
    rec_name_fields: tuple[str, ...] = ("name",)  # what a `rec_name` domain searches (search_rec_name)
    transitions: frozenset[tuple[str, str]] = frozenset()
    buttons: Mapping[str, Button] = field(default_factory=dict)
    numbered_on: tuple[str, ...] = ()  # buttons that give a record its `number` from the model's sequence
    company_bound: bool = False  # create checks the record rule "User in companies"
    written_at_create: bool = False  # create writes the record again at once: write_date is set


META = {
    "id": Field("integer", "ID", readonly=True),
    "create_date": Field("datetime", "Created at", readonly=True),
    "create_uid": Field("many2one", "Created by", "res.user", readonly=True),
    "write_date": Field("datetime", "Edited at", readonly=True),
    "write_uid": Field("many2one", "Edited by", "res.user", readonly=True),
    "rec_name": Field("char", "Record Name", readonly=True, computed=True),
    # coalesce(write_date, create_date) in SQL (`column_last_modified_at`): searchable and sortable
    "last_modified_at": Field("datetime", "Last Modified at", readonly=True, computed=True),
}
WAREHOUSE, OUTPUT, STORAGE, CUSTOMERS, PRODUCTION_ZONE = 5, 2, 3, 7, 9  # ids in a fresh 8.2 database
COMPANY, CURRENCY, UNIT = 1, 1, 1
NUMBERED = ("request", "draft", "waiting", "assigned", "running", "done", "cancelled")


def _m2o(relation: str, label: str, **kw: Any) -> Field:
    return Field("many2one", label, relation, **kw)


def _numbered(name_of: Callable[[str, Any], str], row: Row) -> str:
    """production, shipments and sales: "<number> [<reference>]", or "(<id>)" with neither."""
    items = [row["number"]] if row.get("number") else []
    items += [f"[{row['reference']}]"] if row.get("reference") else []
    return " ".join(items) or f"({row['id']})"


def _code_name(name_of: Callable[[str, Any], str], row: Row) -> str:
    return f"[{row['code']}] {row['name']}" if row.get("code") else str(row.get("name") or "")


def _sale_line_name(name_of: Callable[[str, Any], str], row: Row) -> str:
    """"2\u00a0u [PUMP-100] Pump @ 1 [TH-42]": the quantity in its unit's digits (the twin's units have none)."""
    quantity = row.get("quantity")
    amount = f"{quantity:g}\u00a0{name_of('product.uom#symbol', row['unit'])}" if row.get("unit") else str(quantity)
    return f"{amount} {name_of('product.product', row.get('product'))} @ {name_of('sale.sale', row.get('sale'))}"


def _may_cancel_finished(row: Row, user: UserFacts, finished: tuple[str, ...]) -> bool:
    # cancel is hidden once cancelled, and on finished records unless administrator or stock cancellation group
    return row["state"] != "cancelled" and (row["state"] not in finished or bool(user.get("admin")))


def _in(*states: str) -> Callable[[Row, UserFacts], bool]:
    return lambda row, user: row["state"] in states


def _split_warehouse(row: Row) -> bool:
    return bool(row.get("warehouse_storage") != row.get("warehouse_output"))


PRODUCTION = Model(
    "production", "Production",
    {
        "product": _m2o("product.product", "Product", editable_in=("request", "draft")),
        "quantity": Field("float", "Quantity", editable_in=("request", "draft")),
        "unit": _m2o("product.uom", "Unit", editable_in=("request", "draft")),
        "reference": Field("char", "Reference"),
        "number": Field("char", "Number", readonly=True),
        "state": Field("selection", "State", readonly=True, selection=NUMBERED, default="draft"),
        "planned_date": Field("date", "Planned Date"),
        "effective_date": Field("date", "Effective Date"),
        "company": _m2o("company.company", "Company", required=True, editable_in=("request", "draft")),
        "warehouse": _m2o("stock.location", "Warehouse", required=True, editable_in=("request", "draft"),
                          default=WAREHOUSE),
        "location": _m2o("stock.location", "Location", required=True, editable_in=("request", "draft"),
                         default=PRODUCTION_ZONE),
    },
    _numbered,
    order=(("effective_date", "ASC NULLS LAST"), ("id", "ASC")),
    rec_name_fields=("number", "reference"),
    transitions=frozenset({
        ("request", "draft"), ("draft", "waiting"), ("waiting", "assigned"), ("assigned", "running"),
        ("running", "done"), ("running", "waiting"), ("running", "cancelled"), ("assigned", "waiting"),
        ("waiting", "waiting"), ("waiting", "draft"), ("request", "cancelled"), ("draft", "cancelled"),
        ("waiting", "cancelled"), ("assigned", "cancelled"), ("cancelled", "draft"), ("done", "cancelled")}),
    buttons={
        "cancel": Button("cancelled", lambda row, user: _may_cancel_finished(row, user, ("running", "done"))),
        "draft": Button("draft", _in("request", "waiting", "cancelled")),
        "wait": Button("waiting", _in("draft", "assigned", "waiting", "running")),
        "run": Button("running", _in("assigned")),
        "do": Button("done", _in("running")),
        # no stock moves in the twin, so every waiting production can be assigned
        "assign_try": Button("assigned", only_from=("waiting",)),
        "assign_force": Button("assigned", only_from=("waiting",)),
    },
    numbered_on=("wait",),
    company_bound=True,
)

SHIPMENT_OUT = Model(
    "stock.shipment.out", "Stock Shipment Out",
    {
        "customer": _m2o("party.party", "Customer", required=True, editable_in=("draft",)),
        "delivery_address": _m2o("party.address", "Delivery Address", required=True, editable_in=("draft",)),
        "reference": Field("char", "Reference"),
        # from the module stock_shipment_cost, which the project's real peer installs (carrier alone has none)
        "carrier": _m2o("carrier", "Carrier",
                        editable_in=("draft", "waiting", "assigned", "picked", "packed", "shipped")),
        "number": Field("char", "Number", readonly=True),
        "state": Field("selection", "State", readonly=True, default="draft", selection=(
            "draft", "waiting", "assigned", "picked", "packed", "shipped", "done", "cancelled")),
        "planned_date": Field("date", "Planned Date"),
        "effective_date": Field("date", "Effective Date"),
        "company": _m2o("company.company", "Company", required=True, editable_in=("draft",)),
        "warehouse": _m2o("stock.location", "Warehouse", required=True, editable_in=("draft",), default=WAREHOUSE),
        "warehouse_output": _m2o("stock.location", "Warehouse Output", required=True),
        "warehouse_storage": _m2o("stock.location", "Warehouse Storage", required=True),
    },
    _numbered,
    order=(("effective_date", "ASC NULLS LAST"), ("id", "ASC")),
    rec_name_fields=("number", "reference"),
    transitions=frozenset({
        ("draft", "waiting"), ("waiting", "assigned"), ("waiting", "picked"), ("assigned", "picked"),
        ("assigned", "packed"), ("picked", "packed"), ("packed", "shipped"), ("packed", "done"),
        ("packed", "waiting"), ("packed", "picked"), ("shipped", "done"), ("assigned", "waiting"),
        ("waiting", "waiting"), ("waiting", "draft"), ("draft", "cancelled"), ("waiting", "cancelled"),
        ("assigned", "cancelled"), ("picked", "cancelled"), ("packed", "cancelled"), ("shipped", "cancelled"),
        ("cancelled", "draft"), ("done", "cancelled")}),
    buttons={
        "cancel": Button("cancelled", lambda row, user: _may_cancel_finished(row, user, ("done",))),
        "draft": Button("draft", _in("waiting", "cancelled")),
        "wait": Button("waiting", lambda row, user: row["state"] in ("assigned", "waiting", "draft") or (
            row["state"] == "packed" and not _split_warehouse(row))),
        "pick": Button("picked", lambda row, user: _split_warehouse(row) and row["state"] in ("assigned", "packed")),
        "pack": Button("packed", lambda row, user: row["state"] == ("picked" if _split_warehouse(row) else "assigned")),
        "ship": Button("shipped", _in("packed")),
        "do": Button("done", _in("packed", "shipped")),
        "assign_try": Button("assigned", only_from=("waiting",)),
        "assign_force": Button("assigned", only_from=("waiting",)),
    },
    numbered_on=("wait",),
    company_bound=True,
)

_DRAFT = ("draft",)
SALE = Model(
    "sale.sale", "Sale",
    {
        "party": _m2o("party.party", "Party", required=True, editable_in=_DRAFT),
        "reference": Field("char", "Reference"),
        "description": Field("char", "Description", editable_in=_DRAFT),
        "comment": Field("text", "Comment"),
        "number": Field("char", "Number", readonly=True),
        "state": Field("selection", "State", readonly=True, default="draft", selection=(
            "draft", "quotation", "confirmed", "processing", "done", "cancelled")),
        "lines": Field("one2many", "Lines", "sale.line", inverse="sale", editable_in=_DRAFT),
        # the sum of the lines (no taxes in the twin); without lines, what the twin's helpers set, else 0
        "total_amount": Field("numeric", "Total", readonly=True, default=Decimal(0)),
        "untaxed_amount": Field("numeric", "Untaxed", readonly=True, default=Decimal(0)),
        "tax_amount": Field("numeric", "Tax", readonly=True, default=Decimal(0)),
        "invoice_address": _m2o("party.address", "Invoice Address", editable_in=_DRAFT),
        "shipment_address": _m2o("party.address", "Shipment Address", editable_in=_DRAFT),
        "invoice_method": Field("selection", "Invoice Method", required=True, editable_in=_DRAFT, default="order",
                                selection=("manual", "order", "fulfillment")),
        "shipment_method": Field("selection", "Shipment Method", required=True, editable_in=_DRAFT,
                                 default="order", selection=("manual", "order", "invoice")),
        "sale_date": Field("date", "Sale Date", editable_in=_DRAFT),
        "shipment_state": Field("selection", "Shipment State", readonly=True, default="none", selection=(
            "none", "waiting", "partially shipped", "sent", "exception")),
        "invoice_state": Field("selection", "Invoice State", readonly=True, default="none", selection=(
            "none", "pending", "awaiting payment", "partially paid", "paid", "exception")),
        "shipments": Field("many2many", "Shipments", "stock.shipment.out", readonly=True, computed=True),
        "company": _m2o("company.company", "Company", required=True, editable_in=_DRAFT),
        "currency": _m2o("currency.currency", "Currency", required=True, editable_in=_DRAFT, default=CURRENCY),
        "warehouse": _m2o("stock.location", "Warehouse", editable_in=_DRAFT, default=WAREHOUSE),
    },
    _numbered,
    order=(("sale_date", "DESC NULLS FIRST"), ("id", "DESC")),
    rec_name_fields=("number", "reference"),
    transitions=frozenset({
        ("draft", "quotation"), ("quotation", "confirmed"), ("confirmed", "processing"), ("confirmed", "draft"),
        ("processing", "processing"), ("processing", "done"), ("done", "processing"), ("draft", "cancelled"),
        ("quotation", "cancelled"), ("quotation", "draft"), ("cancelled", "draft")}),
    buttons={
        "cancel": Button("cancelled", _in("draft", "quotation")),
        "draft": Button("draft", _in("cancelled", "quotation", "confirmed")),
        # quote is also read-only on a sale without lines (here: without an amount)
        "quote": Button("quotation", lambda row, user: row["state"] == "draft" and bool(
            row.get("lines") or row.get("untaxed_amount"))),
        "confirm": Button("confirmed", _in("quotation")),
    },
    numbered_on=("quote",),
    company_bound=True,
)

OTHERS = [
    Model("res.user", "User", {
        "login": Field("char", "Login", required=True),
        "name": Field("char", "Name"),
        "active": Field("boolean", "Active", default=True),
    }, lambda name_of, row: row.get("name") or row["login"], order=(("name", "ASC"), ("id", "ASC")),
        rec_name_fields=("login", "name")),
    Model("party.party", "Party", {
        "name": Field("char", "Name"),
        "code": Field("char", "Code", create_only=True),  # else from the party sequence at create
        "active": Field("boolean", "Active", default=True),
        "phone": Field("char", "Phone", create_only=True, searchable=False, contact=True),
        "email": Field("char", "Email", create_only=True, searchable=False, contact=True),
        "addresses": Field("one2many", "Addresses", "party.address", inverse="party"),
        "contact_mechanisms": Field("one2many", "Contact Mechanisms", "party.contact_mechanism", inverse="party"),
    }, lambda name_of, row: str(row.get("name") or f"[{row.get('code')}]"),
        order=(("name", "ASC"), ("id", "ASC")), rec_name_fields=("code", "name"), written_at_create=True),
    Model("party.address", "Party Address", {
        "party": _m2o("party.party", "Party", required=True),
        "street": Field("text", "Street"),
        "city": Field("char", "City"),
    }, lambda name_of, row: ", ".join(filter(None, [name_of("party.party", row.get("party")), row.get("street"),
                                                    row.get("city")]))),
    Model("party.contact_mechanism", "Party Contact Mechanism", {
        "party": _m2o("party.party", "Party", required=True),
        "type": Field("selection", "Type", required=True, selection=(
            "phone", "mobile", "fax", "email", "website", "skype", "sip", "irc", "jabber", "other")),
        "value": Field("char", "Value", required=True),
        "active": Field("boolean", "Active", default=True),
    }, lambda name_of, row: f"{name_of('party.party', row.get('party'))} <{row.get('value') or ''}>",
        rec_name_fields=("value",), written_at_create=True),
    Model("company.company", "Company", {"party": _m2o("party.party", "Party", required=True)},
          lambda name_of, row: name_of("party.party", row["party"]), rec_name_fields=()),
    Model("currency.currency", "Currency", {
        "name": Field("char", "Name", required=True), "code": Field("char", "Code", required=True),
    }, lambda name_of, row: str(row["name"]), rec_name_fields=("name", "code")),
    Model("product.uom", "Product Uom", {
        "name": Field("char", "Name", required=True), "symbol": Field("char", "Symbol", required=True),
    }, lambda name_of, row: str(row["name"])),
    Model("stock.location", "Stock Location", {
        "name": Field("char", "Name", required=True), "code": Field("char", "Code"),
        "type": Field("selection", "Type", selection=(
            "supplier", "customer", "lost_found", "warehouse", "storage", "production", "drop", "rental", "view")),
    }, _code_name, rec_name_fields=("name", "code")),
    Model("product.product", "Product", {
        # code and name come from the template (not emulated): created by the twin's helpers only
        "code": Field("char", "Code", setter=False),
        "name": Field("char", "Name", setter=False),
        "default_uom": _m2o("product.uom", "Default UoM", setter=False, default=UNIT),
        "active": Field("boolean", "Active", default=True),
    }, _code_name, order=(("code", "ASC"), ("name", "ASC"), ("id", "ASC")), rec_name_fields=("code", "name")),
    Model("sale.line", "Sale Line", {
        "sale": _m2o("sale.sale", "Sale", required=True),
        "type": Field("selection", "Type", required=True, default="line",
                      selection=("line", "subtotal", "title", "comment")),
        "product": _m2o("product.product", "Product"),
        "quantity": Field("float", "Quantity"),
        "unit": _m2o("product.uom", "Unit", required=True),
        "unit_price": Field("numeric", "Unit Price"),
        "description": Field("text", "Description"),
    }, _sale_line_name, order=(("sale.sale_date", "DESC NULLS FIRST"), ("sale.id", "DESC"), ("id", "ASC")),
        rec_name_fields=("description",)),
    Model("carrier", "Carrier", {
        "party": _m2o("party.party", "Party", required=True),
        "carrier_product": _m2o("product.product", "Carrier Product", required=True),
        "active": Field("boolean", "Active", default=True),
    }, lambda name_of, row: f"{name_of('party.party', row['party'])} - "
                            f"{name_of('product.product', row['carrier_product'])}", rec_name_fields=()),
]

MODELS: Mapping[str, Model] = MappingProxyType({m.name: m for m in [PRODUCTION, SHIPMENT_OUT, SALE, *OTHERS]})


def field_of(model: Model, name: str) -> Field:
    """The field, meta fields included; KeyError(name) — the real one's "'name'" error — if unknown."""
    if name in model.fields:
        return model.fields[name]
    return META[name]
