"""A connector's declared schema joins the mapping: what the system would refuse is caught at load
time (`mappings check`) or before a value is sent (apply)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from connectors.bottlecrm.connector import BottleCRMConnector
from hub.core.errors import InvalidValue
from hub.mapping_files import DEFAULT_DIR, check_mappings

# BottleCRM has no product fields: with it as the CRM, the shipped erp/mes mappings would subscribe to
# product.* that nobody owns (a mapping problem by design), so these tests pair it with wms and courier.
SYSTEMS = {"crm": "bottlecrm", "wms": "wms", "courier": "courier"}
SCHEMAS = {"crm": BottleCRMConnector.SCHEMA}


def _copy(tmp_path: Path) -> Path:
    target = tmp_path / "maps"
    shutil.copytree(DEFAULT_DIR, target, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    return target


def test_the_shipped_bottlecrm_mapping_fits_bottlecrm() -> None:
    """The default BottleCRM mapping loads against BottleCRM's declared fields with no problem."""
    mapping_set, problems = check_mappings(DEFAULT_DIR, SYSTEMS, SCHEMAS)
    assert problems == [] and mapping_set is not None
    assert mapping_set.owners("customer.phone") == {"crm"}


def test_writing_a_status_bottlecrm_refuses_is_a_mapping_problem(tmp_path: Path) -> None:
    """Accepting Duplicate for writes is caught: BottleCRM lets only a merge set it."""
    maps = _copy(tmp_path)
    text = (maps / "bottlecrm.toml").read_text().replace('"Closed", "Rejected"]', '"Closed", "Rejected", "Duplicate"]')
    (maps / "bottlecrm.toml").write_text(text)
    _, problems = check_mappings(maps, SYSTEMS, SCHEMAS)
    assert any(p.key == "fields.status.accepts" and "Duplicate" in p.message for p in problems)


def test_a_field_bottlecrm_does_not_have_is_a_mapping_problem(tmp_path: Path) -> None:
    """Mapping a canonical field onto a BottleCRM field that does not exist names the file, key and fields."""
    maps = _copy(tmp_path)
    text = (maps / "bottlecrm.toml").read_text().replace('field = "case.description"', 'field = "case.notes"')
    (maps / "bottlecrm.toml").write_text(text)
    _, problems = check_mappings(maps, SYSTEMS, SCHEMAS)
    [problem] = [p for p in problems if p.key == "fields.fault.description.field"]
    assert problem.file.endswith("bottlecrm.toml") and "case.notes" in problem.message
    assert "case.description" in problem.message


def test_a_value_longer_than_bottlecrm_takes_is_refused_before_sending() -> None:
    """BottleCRM's 25-character phone limit becomes the mapping's: a longer phone is never written there."""
    mapping_set, problems = check_mappings(DEFAULT_DIR, SYSTEMS, SCHEMAS)
    assert not problems and mapping_set is not None
    fm = mapping_set.systems["crm"].fields["customer.phone"]
    assert fm.to_system("+44 20 7946 0000", "crm") == "+44 20 7946 0000"
    with pytest.raises(InvalidValue, match="at most 25 characters"):
        fm.to_system("+44 20 7946 0000 ext. 12345678", "crm")
