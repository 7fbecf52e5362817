"""Mapping files: every problem names the file, the key and a fix; translations round-trip; defaults hold."""

from __future__ import annotations

import textwrap
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hub.core.canonical import STATUSES, normalize
from hub.core.errors import InvalidValue, MappingError, Problem
from hub.core.mapping import FieldMapping
from hub.mapping_files import DEFAULT_DIR, check_mappings, default_systems, load_mappings

pytestmark = pytest.mark.unit

DEFAULTS = load_mappings(DEFAULT_DIR, default_systems())


def problems_of(tmp_path: Path, files: dict[str, str], systems: dict[str, str] | None = None) -> list[Problem]:
    """Write mapping files into tmp_path, load them, and return every problem (load_mappings must raise)."""
    for name, text in files.items():
        (tmp_path / f"{name}.toml").write_text(textwrap.dedent(text), encoding="utf-8")
    systems = systems or {name: name for name in files}
    mapping_set, problems = check_mappings(tmp_path, systems)
    assert mapping_set is None
    with pytest.raises(MappingError) as raised:
        load_mappings(tmp_path, systems)
    assert raised.value.problems == tuple(problems)
    return problems


def only_problem_at(problems: list[Problem], key: str) -> Problem:
    found = [p for p in problems if p.key == key]
    assert len(found) == 1, f"expected one problem at `{key}`, got {problems}"
    return found[0]


def assert_names_file_key_and_fix(problem: Problem, file_name: str) -> None:
    assert Path(problem.file).name == file_name
    assert problem.fix
    text = str(problem)
    assert file_name in text and f"`{problem.key}`" in text and f"(fix: {problem.fix})" in text


# --- loader problems --------------------------------------------------------------------------------


def test_an_unknown_canonical_field_is_reported_with_a_suggestion(tmp_path: Path) -> None:
    """A misspelt canonical field is named with its file and key, and the message suggests the right name."""
    problems = problems_of(
        tmp_path,
        {
            "crm": """
                [fields."customer.nmae"]
                field = "contact.name"
                owner = true
            """
        },
    )

    problem = only_problem_at(problems, "fields.customer.nmae")
    assert "`customer.nmae` is not a canonical field" in problem.message
    assert problem.fix == "did you mean `customer.name`?"
    assert_names_file_key_and_fix(problem, "crm.toml")


def test_a_mapped_field_that_no_system_owns_is_reported(tmp_path: Path) -> None:
    """A field that several systems map but none owns is reported against all of their files."""
    problems = problems_of(
        tmp_path,
        {
            "crm": """
                [fields."customer.phone"]
                field = "contact.phone"
            """,
            "wms": """
                [fields."customer.phone"]
                field = "recipient_phone"
                direction = "write"
            """,
        },
    )

    problem = only_problem_at(problems, "fields.customer.phone.owner")
    assert "crm, wms" in problem.message and "no system owns it" in problem.message
    assert "owner = true" in problem.fix
    assert [Path(part).name for part in problem.file.split(", ")] == ["crm.toml", "wms.toml"]
    assert f"(fix: {problem.fix})" in str(problem)


def test_an_accepted_enum_value_without_a_mapping_is_reported(tmp_path: Path) -> None:
    """A status the system accepts but `values` does not map is named, with the line to add."""
    problems = problems_of(
        tmp_path,
        {
            "crm": """
                [fields.status]
                field = "case.status"
                owner = true
                values = { "New" = "new", "Closed" = "closed" }
                accepts = ["New", "Closed", "On Hold"]
            """
        },
    )

    problem = only_problem_at(problems, "fields.status.accepts")
    assert "`On Hold` has no mapping" in problem.message
    assert problem.fix == 'add "On Hold" = "<canonical value>" to `values`'
    assert_names_file_key_and_fix(problem, "crm.toml")


def test_an_enum_value_mapped_to_a_status_that_does_not_exist_is_reported(tmp_path: Path) -> None:
    """A system status mapped to something that is not a canonical status is named and the valid ones listed."""
    problems = problems_of(
        tmp_path,
        {
            "crm": """
                [fields.status]
                field = "case.status"
                owner = true
                values = { "New" = "new", "On Hold" = "on_hold" }
            """
        },
    )

    problem = only_problem_at(problems, "fields.status.values.On Hold")
    assert "`on_hold`" in problem.message
    assert ", ".join(STATUSES) in problem.message
    assert_names_file_key_and_fix(problem, "crm.toml")


def test_an_enum_field_without_a_values_table_is_reported(tmp_path: Path) -> None:
    """Mapping the status without saying how its values translate is refused with an example of the table."""
    problems = problems_of(
        tmp_path,
        {
            "crm": """
                [fields.status]
                field = "case.status"
                owner = true
            """
        },
    )

    problem = only_problem_at(problems, "fields.status.values")
    assert 'values = { "Open" = "new" }' in problem.fix
    assert_names_file_key_and_fix(problem, "crm.toml")


def test_an_owner_the_hub_cannot_read_is_reported(tmp_path: Path) -> None:
    """An owner with direction "write" is refused: the hub could never read the owner's value."""
    problems = problems_of(
        tmp_path,
        {
            "crm": """
                [fields."customer.name"]
                field = "contact.name"
                owner = true
                direction = "write"
            """
        },
    )

    problem = only_problem_at(problems, "fields.customer.name.owner")
    assert "readable" in problem.message
    assert 'direction = "read" or "both"' in problem.fix
    assert_names_file_key_and_fix(problem, "crm.toml")


@pytest.mark.parametrize(
    ("text", "key", "allowed"),
    [
        ("[system]\nrank = 1\nrnak = 2\n", "system.rnak", "default_author_rank, rank, reference_field"),
        (
            '[fields."customer.name"]\nfield = "n"\nowner = true\ncolour = "red"\n',
            "fields.customer.name.colour",
            "accepts, date_format, direction, field",
        ),
        ('owners = ["crm"]\n', "owners", "authors, fields, system"),
    ],
)
def test_an_unknown_key_is_reported_with_the_keys_allowed_there(
    tmp_path: Path, text: str, key: str, allowed: str
) -> None:
    """A key the mapping format does not know is named, and the fix lists the keys allowed in its place."""
    problems = problems_of(tmp_path, {"crm": text})

    problem = only_problem_at(problems, key)
    assert problem.fix.startswith("remove it; allowed keys here are ")
    assert allowed in problem.fix
    assert_names_file_key_and_fix(problem, "crm.toml")


def test_a_missing_required_key_is_reported(tmp_path: Path) -> None:
    """A field section without the system's field name says which key to add."""
    problems = problems_of(tmp_path, {"crm": '[fields."customer.name"]\nowner = true\n'})

    problem = only_problem_at(problems, "fields.customer.name.field")
    assert problem.fix == "add it"
    assert_names_file_key_and_fix(problem, "crm.toml")


def test_a_file_that_is_not_toml_is_reported_with_the_position(tmp_path: Path) -> None:
    """Broken TOML is reported with the file, the line and column, and a fix."""
    problems = problems_of(tmp_path, {"crm": "[system\nrank = 1\n"})

    (problem,) = problems
    assert problem.key == "(syntax)"
    assert "not valid TOML" in problem.message and "line 1" in problem.message
    assert_names_file_key_and_fix(problem, "crm.toml")


def test_a_missing_mapping_file_is_reported_with_how_to_fix_it(tmp_path: Path) -> None:
    """A system pointing at a mapping file that does not exist names the file, the system and two fixes."""
    problems = problems_of(tmp_path, {}, systems={"crm": "bottlecrm"})

    (problem,) = problems
    assert problem.key == "mapping"
    assert "system `crm`" in problem.message
    assert "[systems.crm]" in problem.fix
    assert_names_file_key_and_fix(problem, "bottlecrm.toml")


def test_every_problem_in_a_file_is_reported_at_once(tmp_path: Path) -> None:
    """Several mistakes in one file are all reported together, so one run of `mappings check` shows them all."""
    problems = problems_of(
        tmp_path,
        {
            "crm": """
                [fields."customer.nmae"]
                field = "contact.name"
                owner = true

                [fields.status]
                field = "case.status"
                owner = true
                values = { "New" = "new", "On Hold" = "on_hold" }
                accepts = ["New", "Closed"]
            """
        },
    )

    assert {p.key for p in problems} == {
        "fields.customer.nmae",
        "fields.status.values.On Hold",
        "fields.status.accepts",
    }


# --- the default mappings ---------------------------------------------------------------------------


def test_the_default_mappings_load_without_problems() -> None:
    """The mapping files shipped in mappings/ load cleanly for the five default systems."""
    mapping_set, problems = check_mappings(DEFAULT_DIR, default_systems())

    assert problems == []
    assert mapping_set is not None
    assert sorted(mapping_set.systems) == ["courier", "crm", "erp", "mes", "wms"]


@pytest.mark.parametrize(
    ("field", "owner"),
    [
        ("customer.name", "crm"),
        ("customer.phone", "crm"),
        ("customer.email", "crm"),
        ("customer.address", "crm"),
        ("production.progress", "mes"),
        ("shipment.waybill", "wms"),
        ("shipment.carrier", "wms"),
        ("shipment.delivered_at", "courier"),
        ("billing.amount", "erp"),
        ("parts.reserved", "erp"),
    ],
)
def test_each_default_field_has_exactly_its_source_of_truth_as_owner(field: str, owner: str) -> None:
    """Only the system that is the source of truth for a field may change it under the default mappings."""
    assert DEFAULTS.owners(field) == frozenset({owner})


def test_every_mapped_default_field_has_exactly_one_owner() -> None:
    """Under the default mappings no field is shared between owners, so no two systems fight over a value."""
    assert {name: len(DEFAULTS.owners(name)) for name in DEFAULTS.mapped_fields()} == {
        name: 1 for name in DEFAULTS.mapped_fields()
    }


def test_the_erp_receives_the_customer_but_cannot_change_it() -> None:
    """The ERP subscribes to the customer's contact fields so that orders reach the right party."""
    for name in ("customer.name", "customer.phone", "customer.email", "customer.address"):
        assert "erp" in DEFAULTS.subscribers(name)
        assert not DEFAULTS.systems["erp"].fields[name].reads


# --- translation: to_canonical / to_system ----------------------------------------------------------


def test_crm_status_words_translate_both_ways() -> None:
    """CRM status words map to canonical statuses; writing back uses the first word listed for a status."""
    status = DEFAULTS.systems["crm"].fields["status"]

    assert status.to_canonical("In Repair") == "in_repair"
    assert status.to_canonical("Rejected") == "cancelled"
    assert status.to_canonical("Duplicate") == "cancelled"
    assert status.to_system("cancelled", "crm") == "Rejected"
    assert status.to_system("waiting_parts", "crm") == "Pending"


@pytest.mark.parametrize("system", ["crm", "erp"])
@pytest.mark.parametrize("canonical", STATUSES)
def test_every_status_survives_a_round_trip_through_the_default_mappings(system: str, canonical: str) -> None:
    """Every canonical status written to the CRM or ERP reads back as the same status."""
    status = DEFAULTS.systems[system].fields["status"]

    assert status.to_canonical(status.to_system(canonical, system)) == canonical


def test_an_unmapped_status_word_is_refused_naming_the_known_words() -> None:
    """A status word the mapping does not know is refused, and the message lists the words it knows."""
    status = DEFAULTS.systems["crm"].fields["status"]

    with pytest.raises(InvalidValue, match="`case.status` = `On Hold` has no mapping to `status`.*New, Assigned"):
        status.to_canonical("On Hold")


def test_a_status_a_target_has_no_word_for_is_refused() -> None:
    """Writing a status the target's table cannot express is refused before anything is sent."""
    mapping = FieldMapping("status", "state", "write", values=(("open", "new"), ("done", "closed")))

    with pytest.raises(InvalidValue, match="acme does not accept `status` = `shipped`.*takes closed, new"):
        mapping.to_system("shipped", "acme")


def delivered_at(date_format: str | None) -> FieldMapping:
    return FieldMapping("shipment.delivered_at", "delivered", "both", date_format=date_format)


def test_iso_dates_are_read_in_any_offset_and_written_in_utc() -> None:
    """An ISO date-time with an offset, or naive (taken as UTC), reads as UTC; writing gives UTC with Z."""
    mapping = delivered_at("iso")

    assert mapping.to_canonical("2026-02-13T11:00:00+01:00") == "2026-02-13T10:00:00Z"
    assert mapping.to_canonical("2026-02-13T10:00:00") == "2026-02-13T10:00:00Z"
    assert mapping.to_system("2026-02-13T10:00:00Z", "courier") == "2026-02-13T10:00:00Z"


def test_unix_timestamps_translate_both_ways() -> None:
    """A system speaking Unix seconds (or milliseconds) reads and writes the same instant."""
    assert delivered_at("unix").to_canonical(1770976800) == "2026-02-13T10:00:00Z"
    assert delivered_at("unix").to_system("2026-02-13T10:00:00Z", "courier") == 1770976800
    assert delivered_at("unix_ms").to_canonical(1770976800250) == "2026-02-13T10:00:00.250000Z"
    assert delivered_at("unix_ms").to_system("2026-02-13T10:00:00.250Z", "courier") == 1770976800250


def test_a_strftime_pattern_translates_both_ways_in_utc() -> None:
    """A system with its own date pattern is read as UTC and written in its pattern."""
    mapping = delivered_at("%d.%m.%Y %H:%M")

    assert mapping.to_canonical("13.02.2026 10:00") == "2026-02-13T10:00:00Z"
    assert mapping.to_system("2026-02-13T11:00:00+01:00", "courier") == "13.02.2026 10:00"


@pytest.mark.parametrize(
    ("date_format", "raw"),
    [("iso", "13.02.2026"), ("unix", "soon"), ("%d.%m.%Y %H:%M", "2026-02-13T10:00:00Z")],
)
def test_a_date_in_the_wrong_format_is_refused_naming_the_format(date_format: str, raw: str) -> None:
    """A date that does not fit the system's format is refused with the field, the value and the format."""
    with pytest.raises(InvalidValue, match=f"`delivered` = `{raw}` is not a date-time in format"):
        delivered_at(date_format).to_canonical(raw)


def test_a_strftime_pattern_with_an_offset_keeps_the_offset() -> None:
    """A system whose date pattern carries an offset is read at that offset, not as if it were UTC."""
    mapping = delivered_at("%Y-%m-%d %H:%M:%S%z")

    assert mapping.to_canonical("2026-02-13 11:00:00+0100") == "2026-02-13T10:00:00Z"


@pytest.mark.parametrize("raw", [1e20, "inf"])
def test_an_impossible_unix_timestamp_is_refused_as_an_invalid_value(raw: object) -> None:
    """A timestamp no calendar can hold is refused as an invalid value, not as a crash."""
    with pytest.raises(InvalidValue):
        delivered_at("unix").to_canonical(raw)


moments = st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(2200, 1, 1), timezones=st.just(UTC))


@settings(deadline=None)
@given(moment=moments)
def test_any_instant_survives_an_iso_round_trip(moment: datetime) -> None:
    """Any instant written to an ISO system reads back as the same canonical instant."""
    canonical = normalize("shipment.delivered_at", moment)
    mapping = delivered_at("iso")

    assert mapping.to_canonical(mapping.to_system(canonical, "courier")) == canonical


@settings(deadline=None)
@given(moment=moments.map(lambda m: m.replace(microsecond=0)))
def test_any_whole_second_survives_a_unix_and_a_strftime_round_trip(moment: datetime) -> None:
    """Whole seconds written as Unix time or in a strftime pattern read back as the same instant."""
    canonical = normalize("shipment.delivered_at", moment)

    for date_format in ("unix", "%Y%m%d%H%M%S"):
        mapping = delivered_at(date_format)
        assert mapping.to_canonical(mapping.to_system(canonical, "courier")) == canonical


@settings(deadline=None)
@given(moment=moments.map(lambda m: m.replace(microsecond=m.microsecond // 1000 * 1000)))
def test_any_millisecond_survives_a_unix_ms_round_trip(moment: datetime) -> None:
    """Instants in whole milliseconds written as Unix milliseconds read back unchanged."""
    canonical = normalize("shipment.delivered_at", moment)
    mapping = delivered_at("unix_ms")

    assert mapping.to_canonical(mapping.to_system(canonical, "courier")) == canonical


def cents() -> FieldMapping:
    return FieldMapping("billing.amount", "amount_cents", "both", scale=Decimal(100))


def test_an_amount_in_cents_translates_both_ways() -> None:
    """A system keeping amounts in cents reads 12050 as "120.5" and is sent 12050 for "120.5"."""
    assert cents().to_canonical(12050) == "120.5"
    assert cents().to_canonical("199") == "1.99"
    assert cents().to_system("120.5", "erp") == 12050
    assert cents().to_system("1.99", "erp") == 199


@settings(deadline=None)
@given(amount=st.decimals(min_value=Decimal("-1000000"), max_value=Decimal("1000000"), places=2, allow_nan=False))
def test_any_amount_in_whole_cents_survives_a_round_trip(amount: Decimal) -> None:
    """Any amount with at most two decimals is sent as whole cents and reads back as the same amount."""
    canonical = normalize("billing.amount", str(amount))

    sent = cents().to_system(canonical, "erp")

    assert isinstance(sent, int)
    assert cents().to_canonical(sent) == canonical


def test_a_value_a_target_bounds_refuse_is_caught_before_sending() -> None:
    """The ERP refuses a negative amount and an over-long address, and the message says which rule."""
    erp = DEFAULTS.systems["erp"]

    with pytest.raises(InvalidValue, match="erp field `sale.total_amount` refuses -5: below its minimum 0"):
        erp.fields["billing.amount"].to_system("-5", "erp")
    with pytest.raises(InvalidValue, match="erp field `party.address` takes at most 500 characters, got 501"):
        erp.fields["customer.address"].to_system("x" * 501, "erp")


@pytest.mark.parametrize(("mapping", "raw"), [
    (FieldMapping("status", "s", "both", values=(("Open", "new"),)), ["Open"]),
    (FieldMapping("billing.amount", "cents", "both", scale=Decimal(100)), "sNaN"),
    (FieldMapping("billing.amount", "cents", "both", scale=Decimal(100)), "Infinity"),
    (FieldMapping("production.progress", "p", "both", scale=Decimal(10)), "Infinity"),
    (FieldMapping("production.progress", "p", "both", scale=Decimal(10)), 455),
])
def test_untranslatable_raw_values_are_invalid_values_not_crashes(mapping: FieldMapping, raw: object) -> None:
    """A list for an enum, a NaN or infinite amount, or a scaled progress that is not whole is refused cleanly."""
    with pytest.raises(InvalidValue):
        mapping.to_canonical(raw)


def test_a_mapped_value_the_system_does_not_accept_is_never_written() -> None:
    """With `accepts` narrower than `values`, writes pick an accepted system value or refuse."""
    mapping = FieldMapping("status", "s", "both", values=(("Dup", "cancelled"), ("Rejected", "cancelled"),
                                                          ("Legacy", "closed")), accepts=("Rejected",))
    assert mapping.to_system("cancelled", "crm") == "Rejected"
    with pytest.raises(InvalidValue, match="does not accept `status` = `closed`"):
        mapping.to_system("closed", "crm")
