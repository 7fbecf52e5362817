"""Deploying Tryton as the ERP, MES and WMS: the shipped mappings fit Tryton's fields, a misconfigured
system is refused with its key and fix, and beat polls each Tryton system at its own interval."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from connectors.tryton.connector import schema_for
from hub.config import load_settings
from hub.core.errors import ConfigError, Problem
from hub.mapping_files import DEFAULT_DIR, check_mappings
from hub.messaging.celery_app import poll_schedule
from tests.tryton_world import write_config

SYSTEMS = {"crm": "crm", "courier": "courier", "erp": "tryton_erp", "mes": "tryton_mes", "wms": "tryton_wms"}
SCHEMAS = {"erp": schema_for("sale.sale"), "mes": schema_for("production"), "wms": schema_for("stock.shipment.out")}


def test_the_shipped_tryton_mappings_fit_tryton_and_say_who_owns_what() -> None:
    mapping_set, problems = check_mappings(DEFAULT_DIR, SYSTEMS, SCHEMAS)
    assert problems == [] and mapping_set is not None
    assert mapping_set.owners("production.progress") == {"mes"}
    assert mapping_set.owners("billing.amount") == mapping_set.owners("parts.reserved") == {"erp"}
    assert mapping_set.owners("shipment.waybill") == mapping_set.owners("shipment.carrier") == {"wms"}
    progress = mapping_set.systems["mes"].fields["production.progress"]
    assert [progress.to_canonical(s) for s in ("draft", "waiting", "assigned", "running", "done")] == [
        0, 10, 30, 60, 100]
    assert mapping_set.systems["erp"].fields["parts.reserved"].to_canonical("confirmed") is True


def _problems_after(tmp_path: Path, mapping: str, old: str, new: str) -> list[Problem]:
    """The problems of the shipped mappings with one edit to one file."""
    maps = tmp_path / "maps"
    shutil.copytree(DEFAULT_DIR, maps, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    (maps / mapping).write_text((maps / mapping).read_text().replace(old, new))
    return check_mappings(maps, SYSTEMS, SCHEMAS)[1]


def test_a_field_tryton_does_not_have_is_a_mapping_problem(tmp_path: Path) -> None:
    problems = _problems_after(tmp_path, "tryton_wms.toml", 'field = "reference"', 'field = "tracking_number"')
    [problem] = [p for p in problems if p.key == "fields.shipment.waybill.field"]
    assert "tracking_number" in problem.message and "reference" in problem.message


def test_a_state_mapped_to_a_progress_that_is_not_a_number_is_a_mapping_problem(tmp_path: Path) -> None:
    problems = _problems_after(tmp_path, "tryton_mes.toml", '"running" = 60', '"running" = "half"')
    [problem] = [p for p in problems if p.key == "fields.production.progress.values.running"]
    assert "whole number" in problem.message and problem.fix


def test_a_tryton_system_without_its_database_or_login_is_refused_naming_them(tmp_path: Path) -> None:
    config = tmp_path / "tickethub.toml"
    config.write_text('[systems.crm]\norigin = true\n[systems.mes]\ntype = "tryton"\nbase_url = "http://t"\n'
                      'model = "production"\n')
    with pytest.raises(ConfigError) as refused:
        load_settings(config, environ={})
    text = str(refused.value)
    assert "systems.mes" in text and "database" in text and "hub_author" in text and "credentials_env" in text


def test_an_unknown_tryton_model_is_refused_with_the_known_ones(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    config.write_text(config.read_text().replace('model = "production"', 'model = "mrp.production"'))
    with pytest.raises(ConfigError) as refused:
        load_settings(config, environ={})
    assert "mrp.production" in str(refused.value) and "stock.shipment.out" in str(refused.value)


def test_beat_polls_each_tryton_system_at_its_interval_and_nothing_else(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    config.write_text(config.read_text().replace("[systems.mes]", "[systems.mes]\npoll_interval_seconds = 5"))
    schedule = poll_schedule(load_settings(config, environ={}))
    assert set(schedule) == {"poll-erp", "poll-mes", "poll-wms"}
    assert schedule["poll-mes"]["args"] == ["mes"] and schedule["poll-mes"]["schedule"] == 5
    assert schedule["poll-erp"]["schedule"] == 30  # the default
    assert schedule["poll-mes"]["options"]["expires"] == 5  # a poll not started in time is dropped


def test_mappings_check_shows_tryton_systems_owning_progress_billing_and_the_waybill(tmp_path: Path) -> None:
    """`tickethub mappings check` on a deployment with Tryton as ERP, MES and WMS: no problems, who owns what."""
    from typer.testing import CliRunner

    from hub.cli import app

    config = write_config(tmp_path)
    result = CliRunner().invoke(app, ["--config", str(config), "mappings", "check"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    header = [c.strip() for c in next(line for line in lines if "┃ field" in line).split("┃")[2:-1]]
    rows = {line.split("│")[1].strip(): [c.strip() for c in line.split("│")[2:-1]]
            for line in lines if line.count("│") > 3}
    owners = {field: header[cells.index(next(c for c in cells if c.startswith("OWNER")))]
              for field, cells in rows.items() if any(c.startswith("OWNER") for c in cells)}
    assert owners["production.progress"] == "mes" and owners["billing.amount"] == "erp"
    assert owners["shipment.waybill"] == "wms" and "no problems" in result.output
