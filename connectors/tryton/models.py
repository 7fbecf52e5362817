"""Which Tryton model plays which role, and which of its fields the hub reads, writes and creates with.

One connector type serves three systems: the ERP (`sale.sale`), the MES (`production`) and the WMS
(`stock.shipment.out`); a system's `model` setting picks one. The field names are Tryton's own
(docs/peers/tryton.md); a dotted name reads a related record (`product.code`) and, when writable,
is written by finding that record (`Relation`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from hub.core.ports import FieldSchema


@dataclass(frozen=True)
class Relation:
    """A Many2One written through one of the related record's fields: `product.code` = "PUMP-100"
    becomes `product` = the id of the product whose code is PUMP-100."""

    model: str
    key: str  # the related record's field the value names
    create: Mapping[str, object] | None = None  # no such record: create one with these values too; None: refuse
    # fields of the record being written, filled from the related record's (first) value: a sale takes its
    # invoice and shipment addresses from its party, as Tryton's client does on change of party
    fills: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Backlink:
    """A field read from the record that points at this one: a shipment's sale (`sale.reference`), found
    by searching the other model on its field that lists these records."""

    model: str  # e.g. sale.sale
    field: str  # its field holding these records, e.g. shipments
    reads: str  # its field to read, e.g. reference


@dataclass(frozen=True)
class ModelSpec:
    model: str
    schema: Mapping[str, FieldSchema]  # every field the mapping may name
    relations: Mapping[str, Relation] = field(default_factory=dict)  # dotted writable field -> how
    ticket_field: str | None = None  # where a record the hub creates carries the global ticket ID
    create_defaults: Mapping[str, object] = field(default_factory=dict)
    backlinks: Mapping[str, Backlink] = field(default_factory=dict)  # flat name -> how to read it

    @property
    def read_fields(self) -> list[str]:
        fields = [name for name in self.schema if name != "rec_name" and name not in self.backlinks]
        return sorted({*fields, "rec_name", "create_date", "write_date", "create_uid.login", "write_uid.login"})


def _frozen(**fields: FieldSchema) -> Mapping[str, FieldSchema]:
    return MappingProxyType(fields)


PRODUCTION_STATES = ("request", "draft", "waiting", "assigned", "running", "done", "cancelled")
SHIPMENT_OUT_STATES = ("draft", "waiting", "assigned", "picked", "packed", "shipped", "done", "cancelled")
SALE_STATES = ("draft", "quotation", "confirmed", "processing", "done", "cancelled")

MODELS: Mapping[str, ModelSpec] = MappingProxyType({
    "production": ModelSpec(
        "production",
        _frozen(**{
            "state": FieldSchema("enum", choices=PRODUCTION_STATES, writable=False),
            "reference": FieldSchema("string"),
            "product.code": FieldSchema("string"),
            "quantity": FieldSchema("decimal"),
        }),
        relations=MappingProxyType({"product.code": Relation("product.product", "code",
                                                             fills=MappingProxyType({"unit": "default_uom"}))}),
        ticket_field="reference",
        create_defaults=MappingProxyType({"quantity": 1.0}),
    ),
    "stock.shipment.out": ModelSpec(
        "stock.shipment.out",
        _frozen(**{
            "state": FieldSchema("enum", choices=SHIPMENT_OUT_STATES, writable=False),
            "number": FieldSchema("string", writable=False),
            # "the external identifier for the shipment": the carrier's waybill
            "reference": FieldSchema("string"),
            "carrier.rec_name": FieldSchema("string", writable=False),  # module stock_shipment_cost
            "customer.name": FieldSchema("string", writable=False),
            "delivery_address.rec_name": FieldSchema("text", writable=False),
            "sale.reference": FieldSchema("string", writable=False),  # the ticket of the sale it ships
        }),
        backlinks=MappingProxyType({"sale.reference": Backlink("sale.sale", "shipments", "reference")}),
    ),
    "sale.sale": ModelSpec(
        "sale.sale",
        _frozen(**{
            "state": FieldSchema("enum", choices=SALE_STATES, writable=False),
            "reference": FieldSchema("string"),
            "description": FieldSchema("string"),
            "comment": FieldSchema("text"),
            "party.name": FieldSchema("string"),
            "total_amount": FieldSchema("decimal", writable=False),
        }),
        relations=MappingProxyType({"party.name": Relation(
            "party.party", "name", create=MappingProxyType({"addresses": [["create", [{}]]]}),
            fills=MappingProxyType({"invoice_address": "addresses", "shipment_address": "addresses"}))}),
        ticket_field="reference",
    ),
})
