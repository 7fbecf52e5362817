"""The courier mapping on Kuaidi100, and the mapping engine's `write_values`: carrier names (many) written as
the system's codes (one), matched whatever their case and spacing, anything else refused before sending."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from connectors.kuaidi100.connector import Kuaidi100Connector
from connectors.kuaidi100.notice import parse_notices
from hub.core.errors import InvalidValue
from hub.core.mapping import FieldMapping
from hub.core.ports import FieldSchema
from hub.mapping_files import DEFAULT_DIR, check_mappings, default_systems

SCHEMAS = {"courier": Kuaidi100Connector.SCHEMA}


def courier() -> dict[str, FieldMapping]:
    mapping_set, problems = check_mappings(DEFAULT_DIR, default_systems(), SCHEMAS)
    assert problems == [] and mapping_set is not None
    return dict(mapping_set.systems["courier"].fields)


def test_the_shipped_courier_mapping_fits_kuaidi100() -> None:
    """courier.toml loads with the default systems and against Kuaidi100's declared fields."""
    fields = courier()
    assert {name: (f.system_field, f.direction, f.owner) for name, f in fields.items()} == {
        "shipment.waybill": ("num", "write", False), "shipment.carrier": ("com", "write", False),
        "shipment.status": ("state", "read", True), "shipment.delivered_at": ("delivered_at", "read", True),
        "status": ("ticket_status", "read", False)}


@pytest.mark.parametrize(("name", "code"), [
    ("SF Express", "shunfeng"), ("sf express", "shunfeng"), ("  SF EXPRESS ", "shunfeng"), ("顺丰", "shunfeng"),
    ("顺丰速运", "shunfeng"), ("ZTO", "zhongtong"), ("中通快递", "zhongtong"), ("yto", "yuantong"),
    ("圆通", "yuantong"),
    ("Yunda", "yunda"), ("韵达", "yunda"), ("JD", "jd"), ("京东物流", "jd"), ("EMS", "ems"), ("中国邮政", "ems"),
    ("STO", "shentong"), ("申通", "shentong"), ("Deppon", "debangwuliu"), ("德邦", "debangwuliu"), ("dhl", "dhl"),
    ("shunfeng", "shunfeng"), ("Zhongtong", "zhongtong"), ("debangwuliu", "debangwuliu"),  # codes map to themselves
])
def test_the_wmss_carrier_names_are_written_as_kuaidi100_company_codes(name: str, code: str) -> None:
    assert courier()["shipment.carrier"].to_system(name, "courier") == code


def test_a_carrier_kuaidi100_is_not_told_about_is_refused_naming_the_names_it_takes() -> None:
    with pytest.raises(InvalidValue) as refused:
        courier()["shipment.carrier"].to_system("UPS", "courier")
    message = str(refused.value)
    assert "courier does not accept `shipment.carrier` = `UPS` (its field `com` takes one of" in message
    assert "SF Express" in message and "顺丰" in message and "write_values" in message
    assert message.count("DHL") + message.count("dhl") == 1  # one spelling per name


def test_write_values_is_generic_and_leaves_other_fields_alone() -> None:
    carrier = FieldMapping("shipment.carrier", "carrier_code", "write", write_values=(("Acme Freight", "ACME"),))
    assert carrier.to_system("ACME FREIGHT", "wms") == "ACME" and carrier.to_system(None, "wms") is None
    with pytest.raises(InvalidValue, match="takes one of Acme Freight"):
        carrier.to_system("Acme", "wms")
    assert FieldMapping("shipment.carrier", "carrier", "write").to_system("UPS", "wms") == "UPS"


def test_a_written_code_still_meets_the_systems_limits() -> None:
    carrier = FieldMapping("shipment.carrier", "com", "write", write_values=(("X", "a-very-long-code"),), max_length=5)
    with pytest.raises(InvalidValue, match="at most 5 characters"):
        carrier.to_system("x", "courier")


@pytest.mark.parametrize(("state", "canonical"), [
    ("1", "collected"), ("0", "in_transit"), ("7", "in_transit"), ("5", "delivering"), ("3", "delivered"),
    ("2", "problem"), ("6", "returning"), ("4", "returned"), ("14", "refused"), ("8", "customs"),
])
def test_every_main_state_has_a_shipment_status(state: str, canonical: str) -> None:
    assert courier()["shipment.status"].to_canonical(state) == canonical


@pytest.mark.parametrize(("pushed", "canonical"), [("301", "delivered"), ("1002", "in_transit"), ("12", "customs"),
                                                   ("205", "problem"), ("103", "collected"), ("401", "returned")])
def test_a_pushed_sub_state_reads_as_the_shipment_status_of_its_main_state(pushed: str, canonical: str) -> None:
    payload = {"lastResult": {"com": "ems", "nu": "E1", "state": pushed, "ischeck": "0",
                              "data": [{"time": "2026-02-13 18:00:00", "context": "x"}]}}
    [notice] = parse_notices("courier", payload)
    assert notice.record is not None
    assert courier()["shipment.status"].to_canonical(notice.record.fields["state"]) == canonical


def test_the_ticket_status_and_delivery_time_read_from_a_signed_parcel() -> None:
    fields = courier()
    assert fields["status"].to_canonical("delivered") == "delivered"
    assert fields["shipment.delivered_at"].to_canonical("2026-02-14T04:15:00Z") == "2026-02-14T04:15:00Z"


# ---- the file format ----------------------------------------------------------------------------------------


def _with_courier(tmp_path: Path, text: str) -> list[str]:
    maps = tmp_path / "maps"
    shutil.copytree(DEFAULT_DIR, maps, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    (maps / "courier.toml").write_text(text, encoding="utf-8")
    _, problems = check_mappings(maps, default_systems(maps), SCHEMAS)
    return [f"{p.key}: {p.message} (fix: {p.fix})" for p in problems]


OWNED = """
[fields."shipment.delivered_at"]
field = "delivered_at"
direction = "read"
owner = true
"""


@pytest.mark.parametrize(("section", "words"), [
    ('field = "com"\ndirection = "both"\nwrite_values = { "SF" = "shunfeng" }',
     'fields.shipment.carrier.write_values: write_values is many-to-one, so a value read back could not be '
     'translated back (fix: set direction = "write")'),
    ('field = "com"\ndirection = "write"\nwrite_values = {}',
     "fields.shipment.carrier.write_values: the table is empty"),
    ('field = "com"\ndirection = "write"\nwrite_values = { "SF" = "shunfeng", " sf" = "sf" }',
     "` sf` and `SF` are the same name (case and spaces aside) but map to `sf` and `shunfeng`"),
    ('field = "com"\ndirection = "write"\nwrite_values = { "SF" = " " }', "must not be blank"),
    ('field = "com"\ndirection = "write"\nwrite_values = { "SF" = 1 }', "fields.shipment.carrier.write_values.SF"),
])
def test_a_wrong_write_values_table_is_a_mapping_problem(tmp_path: Path, section: str, words: str) -> None:
    problems = _with_courier(tmp_path, f'[fields."shipment.carrier"]\n{section}\n{OWNED}')
    assert any(words in problem for problem in problems), problems


def test_write_values_is_for_text_fields_only(tmp_path: Path) -> None:
    text = ('[fields."shipment.delivered_at"]\nfield = "delivered_at"\ndirection = "write"\n'
            'write_values = { "today" = "x" }\n')
    problems = _with_courier(tmp_path, text)
    assert any("write_values translates text, and this is a datetime field" in p for p in problems), problems


def test_a_code_the_system_does_not_take_is_a_mapping_problem(tmp_path: Path) -> None:
    """Where the system declares its codes (an enum), a table mapping onto another code is caught at load."""
    maps = tmp_path / "maps"
    shutil.copytree(DEFAULT_DIR, maps, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    schema = {**Kuaidi100Connector.SCHEMA, "com": FieldSchema("enum", choices=("shunfeng", "ems"))}
    _, problems = check_mappings(maps, default_systems(maps), {"courier": schema})
    [problem] = [p for p in problems if p.key == "fields.shipment.carrier.write_values"]
    assert "courier refuses `com` = debangwuliu, dhl, jd" in problem.message
