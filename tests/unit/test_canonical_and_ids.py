"""The canonical normal form of each field type, and global ticket IDs (`YYYYMMDD-BIZ-NNNNN`)."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hub.core.canonical import FIELDS, normalize, parse_datetime
from hub.core.errors import InvalidTicketId, InvalidValue
from hub.core.ticket_ids import TicketId, format_ticket_id, parse_ticket_id

pytestmark = pytest.mark.unit


# --- normalize --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "normal"),
    [
        ("120.50", "120.5"),
        ("120.5", "120.5"),
        (120, "120"),
        ("1E+2", "100"),
        ("0.10", "0.1"),
        (Decimal("120.500"), "120.5"),
        ("-5.0", "-5"),
        ("0.00", "0"),
    ],
)
def test_a_decimal_is_stored_as_a_plain_string_without_trailing_zeros(raw: object, normal: str) -> None:
    """Amounts such as "120.50", 120 or "1E+2" are stored as "120.5", "120" and "100"."""
    assert normalize("billing.amount", raw) == normal


@pytest.mark.parametrize("raw", [True, False, 1.5, "abc", "NaN", "Infinity", ""])
def test_a_decimal_refuses_what_is_not_an_exact_finite_number(raw: object) -> None:
    """Booleans, floats (inexact), words and non-finite numbers are refused as amounts."""
    with pytest.raises(InvalidValue, match="billing.amount"):
        normalize("billing.amount", raw)


def test_minus_zero_has_the_same_normal_form_as_zero() -> None:
    """An amount of "-0.00" is stored as "0", so that two systems reporting zero agree."""
    assert normalize("billing.amount", "-0.00") == "0"


@settings(deadline=None)
@given(
    number=st.decimals(min_value=Decimal("-1e12"), max_value=Decimal("1e12"), places=6, allow_nan=False),
    padding=st.integers(0, 4),
)
def test_equal_amounts_written_differently_have_one_normal_form(number: Decimal, padding: int) -> None:
    """The same amount with extra trailing zeros normalizes to the same string, which keeps its value."""
    plain = normalize("billing.amount", str(number))
    padded = normalize("billing.amount", f"{number:.{6 + padding}f}")

    assert isinstance(plain, str)
    assert plain == padded
    assert Decimal(plain) == number
    assert normalize("billing.amount", plain) == plain


@pytest.mark.parametrize(
    ("raw", "normal"),
    [
        ("2026-02-13T11:00:00+01:00", "2026-02-13T10:00:00Z"),
        ("2026-02-13T10:00:00Z", "2026-02-13T10:00:00Z"),
        ("2026-02-13T10:00:00+00:00", "2026-02-13T10:00:00Z"),
        ("2026-02-13T05:00:00.250-05:00", "2026-02-13T10:00:00.250000Z"),
        (datetime(2026, 2, 13, 12, 0, tzinfo=timezone(timedelta(hours=2))), "2026-02-13T10:00:00Z"),
    ],
)
def test_a_datetime_is_stored_in_utc_ending_in_z(raw: object, normal: str) -> None:
    """Date-times in any offset are stored as the same instant in UTC, written with a trailing Z."""
    assert normalize("shipment.delivered_at", raw) == normal


@pytest.mark.parametrize("raw", [datetime(2026, 2, 13, 10, 0), "2026-02-13T10:00:00", "2026-02-13"])
def test_a_datetime_without_a_time_zone_is_refused(raw: object) -> None:
    """A date-time with no time zone is ambiguous, so it is refused with a hint to add one."""
    with pytest.raises(InvalidValue, match="no time zone"):
        normalize("shipment.delivered_at", raw)


@pytest.mark.parametrize("raw", ["yesterday", 1770976800, date(2026, 2, 13)])
def test_something_that_is_not_a_datetime_is_refused(raw: object) -> None:
    """Words, bare numbers and plain dates are refused as a delivery date-time."""
    with pytest.raises(InvalidValue):
        normalize("shipment.delivered_at", raw)


@pytest.mark.parametrize(
    "raw",
    [
        "0001-01-01T00:00:00+01:00",
        "9999-12-31T23:59:59-01:00",
        datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=1))),
    ],
)
def test_a_datetime_outside_the_utc_calendar_is_refused_as_invalid(raw: object) -> None:
    """A date-time that has no UTC equivalent is refused as an invalid value, not with a crash."""
    with pytest.raises(InvalidValue):
        normalize("shipment.delivered_at", raw)


@settings(deadline=None)
@given(
    moment=st.datetimes(min_value=datetime(1900, 1, 2), max_value=datetime(2200, 1, 1)),
    offset_minutes=st.integers(-14 * 60, 14 * 60),
)
def test_any_aware_datetime_normalizes_to_the_same_instant_in_utc(moment: datetime, offset_minutes: int) -> None:
    """Whatever the offset, the stored string ends in Z, is stable, and names the same instant."""
    aware = moment.replace(tzinfo=timezone(timedelta(minutes=offset_minutes)))

    normal = normalize("shipment.delivered_at", aware)

    assert isinstance(normal, str)
    assert normal.endswith("Z")
    assert parse_datetime(normal) == aware
    assert normalize("shipment.delivered_at", normal) == normal
    assert normalize("shipment.delivered_at", aware.isoformat()) == normal


@pytest.mark.parametrize("progress", [0, 50, 100])
def test_a_percentage_from_0_to_100_is_accepted(progress: int) -> None:
    """Progress is any whole number of percent from 0 to 100."""
    assert normalize("production.progress", progress) == progress


@pytest.mark.parametrize(
    ("raw", "says"),
    [(-1, "below the minimum 0"), (101, "above the maximum 100"), (150, "above the maximum 100")],
)
def test_a_percentage_outside_0_to_100_is_refused(raw: int, says: str) -> None:
    """Progress below 0 or above 100 percent is refused, and the message names the bound."""
    with pytest.raises(InvalidValue, match=says):
        normalize("production.progress", raw)


@pytest.mark.parametrize("raw", [True, False, "50", 50.0])
def test_an_integer_field_refuses_booleans_text_and_floats(raw: object) -> None:
    """True is not 1 percent, "50" is text and 50.0 is a float: all are refused as progress."""
    with pytest.raises(InvalidValue, match="whole number"):
        normalize("production.progress", raw)


def test_a_boolean_field_takes_only_true_or_false() -> None:
    """Parts reserved is true or false; 1 and "true" are refused."""
    assert normalize("parts.reserved", True) is True
    assert normalize("parts.reserved", False) is False
    for raw in (1, "true"):
        with pytest.raises(InvalidValue, match="true or false"):
            normalize("parts.reserved", raw)


def test_text_fields_take_only_text() -> None:
    """Names and descriptions are kept as given, and a number is refused."""
    assert normalize("customer.name", " Ada Lovelace ") == " Ada Lovelace "
    assert normalize("fault.description", "") == ""
    with pytest.raises(InvalidValue, match="takes text"):
        normalize("customer.phone", 4930123)


def test_a_status_must_be_one_of_the_canonical_statuses() -> None:
    """A status is one of the canonical words, spelt exactly; the message lists them."""
    assert normalize("status", "shipped") == "shipped"
    for raw in ("Shipped", "bogus", 3):
        with pytest.raises(InvalidValue, match="is not one of new, assigned"):
            normalize("status", raw)


@pytest.mark.parametrize("field", sorted(FIELDS))
def test_any_field_can_be_cleared(field: str) -> None:
    """Every canonical field accepts None, which clears it."""
    assert normalize(field, None) is None


def test_an_unknown_field_is_refused() -> None:
    """A field name the canonical model does not have is refused by name."""
    with pytest.raises(InvalidValue, match="`customer.nmae` is not a canonical field"):
        normalize("customer.nmae", "Ada")


# --- ticket IDs -------------------------------------------------------------------------------------


def test_a_ticket_id_is_formatted_as_date_code_and_five_digit_sequence() -> None:
    """The 892nd service ticket of 13 February 2026 is 20260213-SVC-00892."""
    assert format_ticket_id(date(2026, 2, 13), "SVC", 892) == "20260213-SVC-00892"
    assert parse_ticket_id("20260213-SVC-00892") == TicketId(date(2026, 2, 13), "SVC", 892)


def test_a_sequence_past_99999_grows_to_six_digits_and_more() -> None:
    """A busy day does not run out of IDs: sequences of six or more digits are formatted and accepted."""
    assert format_ticket_id(date(2026, 2, 13), "RMA", 123456) == "20260213-RMA-123456"
    assert parse_ticket_id("20260213-RMA-123456").sequence == 123456
    assert parse_ticket_id("20260213-RMA-1234567").sequence == 1234567


@settings(deadline=None)
@given(
    day=st.dates(min_value=date(1000, 1, 1), max_value=date(9999, 12, 31)),
    code=st.from_regex(r"\A[A-Z]{2,6}\Z"),
    sequence=st.integers(1, 10**9),
)
def test_any_ticket_id_survives_a_format_and_parse_round_trip(day: date, code: str, sequence: int) -> None:
    """Formatting an ID and parsing it back gives the same date, code and sequence, and the same text."""
    text = format_ticket_id(day, code, sequence)

    parsed = parse_ticket_id(text)

    assert parsed == TicketId(day, code, sequence)
    assert str(parsed) == text


@pytest.mark.parametrize(
    "text",
    [
        "",
        "SVC-00892",
        "20260213-SVC",
        "20260213_SVC_00892",
        " 20260213-SVC-00892",
        "2026-02-13-SVC-00892",
        "20260213-svc-00892",
        "20260213-Svc-00892",
        "20260213-S-00892",
        "20260213-SERVIC-00892x",
        "20260213-SERVICE-00892",
        "20260213-SVC-0892",
        "20260213-SVC-00892-1",
    ],
)
def test_a_malformed_ticket_id_is_refused_with_the_expected_shape(text: str) -> None:
    """A string that is not shaped like 20260213-SVC-00892 is refused, and the message shows that shape."""
    with pytest.raises(InvalidTicketId, match="expected YYYYMMDD-BIZ-NNNNN, e.g. 20260213-SVC-00892"):
        parse_ticket_id(text)


@pytest.mark.parametrize("text", ["20261301-SVC-00001", "20260230-SVC-00001", "00000000-SVC-00001"])
def test_a_ticket_id_whose_date_is_not_a_calendar_date_is_refused(text: str) -> None:
    """A 13th month or a 30 February is refused, and the message says the date is the problem."""
    with pytest.raises(InvalidTicketId, match="is not a calendar date"):
        parse_ticket_id(text)


def test_a_ticket_id_with_sequence_zero_is_refused() -> None:
    """Sequences start at 00001, so 00000 is refused."""
    with pytest.raises(InvalidTicketId, match="the sequence starts at 00001"):
        parse_ticket_id("20260213-SVC-00000")


@pytest.mark.parametrize(
    ("code", "sequence", "says"),
    [
        ("svc", 1, "2 to 6 capital letters"),
        ("S", 1, "2 to 6 capital letters"),
        ("SERVICE", 1, "2 to 6 capital letters"),
        ("SVC", 0, "must be 1 or more"),
    ],
)
def test_a_ticket_id_is_not_formatted_from_a_bad_code_or_sequence(code: str, sequence: int, says: str) -> None:
    """The hub never hands out an ID it would itself refuse: bad codes and sequences are refused up front."""
    with pytest.raises(InvalidTicketId, match=says):
        format_ticket_id(date(2026, 2, 13), code, sequence)


def test_a_ticket_id_with_a_trailing_newline_is_refused() -> None:
    """An ID followed by a newline is not an ID; it must not resolve to the ticket without it."""
    with pytest.raises(InvalidTicketId):
        parse_ticket_id("20260213-SVC-00892\n")


def test_a_ticket_id_with_non_ascii_digits_is_refused() -> None:
    """Only ASCII digits make a sequence; a look-alike ID must not resolve to another ticket."""
    with pytest.raises(InvalidTicketId):
        parse_ticket_id("20260213-SVC-\u0660\u0660\u0668\u0669\u0662")


def test_a_business_code_with_a_trailing_newline_is_refused() -> None:
    """A business code read with a stray newline is refused rather than put inside every new ID."""
    with pytest.raises(InvalidTicketId):
        format_ticket_id(date(2026, 2, 13), "SVC\n", 1)
