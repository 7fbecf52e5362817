"""The canonical ticket: which fields exist, their types, and the one normal form of each value.

Values are JSON scalars in normal form so that equality, hashing and storage agree everywhere:
strings as given, integers as int, booleans as bool, decimals as plain strings ("120.5"),
datetimes as ISO 8601 UTC strings ending in "Z". `normalize` is the only way a value enters.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from hub.core.errors import InvalidValue

JsonScalar = str | int | bool | None

STATUSES: tuple[str, ...] = (
    "new",
    "assigned",
    "in_repair",
    "waiting_parts",
    "in_production",
    "ready_to_ship",
    "shipped",
    "delivered",
    "resolved",
    "closed",
    "cancelled",
)

# the parcel's journey as the courier reports it (connectors map their own state codes onto these)
SHIPMENT_STATUSES: tuple[str, ...] = (
    "pending",
    "collected",
    "in_transit",
    "delivering",
    "delivered",
    "problem",
    "returning",
    "returned",
    "refused",
    "customs",
)


@dataclass(frozen=True)
class CanonicalField:
    name: str
    type: str  # string | text | integer | decimal | boolean | datetime | enum
    description: str
    choices: tuple[str, ...] = ()
    minimum: int | None = None
    maximum: int | None = None
    # a value that only grows: a lower one than the current is a conflict, whenever it was made
    monotonic: bool = False


FIELDS: dict[str, CanonicalField] = {
    f.name: f
    for f in (
        CanonicalField("customer.name", "string", "customer's full name"),
        CanonicalField("customer.phone", "string", "customer's phone number"),
        CanonicalField("customer.email", "string", "customer's e-mail address"),
        CanonicalField("customer.address", "text", "customer's postal address"),
        CanonicalField("product.serial", "string", "serial number of the product under service"),
        CanonicalField("product.model", "string", "product model"),
        CanonicalField("fault.description", "text", "the fault as reported"),
        CanonicalField("status", "enum", "ticket status", choices=STATUSES),
        CanonicalField("parts.reserved", "boolean", "spare parts are reserved for this ticket"),
        CanonicalField(
            "production.progress", "integer", "repair/production progress in percent", minimum=0, maximum=100,
            monotonic=True,
        ),
        CanonicalField("shipment.carrier", "string", "carrier of the outgoing shipment"),
        CanonicalField("shipment.waybill", "string", "waybill number of the outgoing shipment"),
        CanonicalField("shipment.status", "enum", "the parcel's state as the courier reports it",
                       choices=SHIPMENT_STATUSES),
        CanonicalField("shipment.delivered_at", "datetime", "when the courier confirmed delivery"),
        CanonicalField("billing.amount", "decimal", "amount billed"),
    )
}


def format_datetime(moment: datetime) -> str:
    if moment.tzinfo is None:
        raise InvalidValue(f"datetime {moment.isoformat()} has no time zone; send UTC or an offset")
    try:
        return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")
    except OverflowError as exc:
        raise InvalidValue(f"datetime {moment.isoformat()} is outside the years 1 to 9999 in UTC") from exc


def parse_datetime(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise InvalidValue(f"`{text}` is not an ISO 8601 date-time") from exc
    if moment.tzinfo is None:
        raise InvalidValue(f"date-time `{text}` has no time zone; add `Z` or an offset")
    try:
        return moment.astimezone(UTC)
    except OverflowError as exc:
        raise InvalidValue(f"date-time `{text}` is outside the years 1 to 9999 in UTC") from exc


def normalize(field_name: str, value: Any) -> JsonScalar:
    """Return `value` in the canonical normal form of `field_name`, or raise InvalidValue."""
    spec = FIELDS.get(field_name)
    if spec is None:
        raise InvalidValue(f"`{field_name}` is not a canonical field")
    if value is None:
        return None
    kind = spec.type
    if kind in ("string", "text"):
        if not isinstance(value, str):
            raise InvalidValue(f"`{field_name}` takes text, not {type(value).__name__} {value!r}")
        return value
    if kind == "enum":
        if value not in spec.choices:
            raise InvalidValue(f"`{field_name}`: `{value}` is not one of {', '.join(spec.choices)}")
        return str(value)
    if kind == "boolean":
        if not isinstance(value, bool):
            raise InvalidValue(f"`{field_name}` takes true or false, not {value!r}")
        return value
    if kind == "integer":
        if isinstance(value, bool) or not isinstance(value, int):
            raise InvalidValue(f"`{field_name}` takes a whole number, not {value!r}")
        if spec.minimum is not None and value < spec.minimum:
            raise InvalidValue(f"`{field_name}`: {value} is below the minimum {spec.minimum}")
        if spec.maximum is not None and value > spec.maximum:
            raise InvalidValue(f"`{field_name}`: {value} is above the maximum {spec.maximum}")
        return value
    if kind == "decimal":
        if isinstance(value, bool) or not isinstance(value, (int, str, Decimal)):
            raise InvalidValue(f"`{field_name}` takes a decimal number as a string or integer, not {value!r}")
        try:
            number = Decimal(value)
        except (InvalidOperation, ValueError) as exc:
            raise InvalidValue(f"`{field_name}`: `{value}` is not a number") from exc
        if not number.is_finite():
            raise InvalidValue(f"`{field_name}`: `{value}` is not a finite number")
        return "0" if number.is_zero() else format(number.normalize(), "f")
    if kind == "datetime":
        if isinstance(value, datetime):
            return format_datetime(value)
        if not isinstance(value, str):
            raise InvalidValue(f"`{field_name}` takes an ISO 8601 date-time, not {value!r}")
        return format_datetime(parse_datetime(value))
    raise AssertionError(f"canonical field {field_name} has unknown type {kind}")  # pragma: no cover
