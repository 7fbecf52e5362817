"""The `tickethub` command line: db upgrade, mappings check, ticket show, configuration errors."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from hub.bootstrap import bootstrap
from hub.cli import app
from hub.config import load_settings
from hub.mapping_files import DEFAULT_DIR
from hub.store.migrate import upgrade
from tests.sample_day import play_sample

runner = CliRunner()


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, database_url: str, tmp_path: Path) -> str:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("TICKETHUB_CONFIG", raising=False)
    monkeypatch.setenv("TICKETHUB_DATABASE_URL", database_url)
    monkeypatch.setenv("COLUMNS", "200")
    return database_url


def _sample(env: str) -> str:
    """The sample ticket's life played on the test's database (in process, no deliveries): its ID."""
    hub = bootstrap(load_settings(None))
    upgrade(hub.engine)
    return play_sample(hub, Console(file=io.StringIO()))


def test_ticket_show_prints_the_record_with_provenance_and_history(env: str) -> None:
    """After a sample ticket's life (an orphan, a refused phone, a stale edit, a non-owner's edit, a duplicate),
    `ticket show` prints the record with provenance and the history, as JSON and as tables."""
    ticket_id = _sample(env)

    shown = runner.invoke(app, ["ticket", "show", ticket_id, "--json", "--history"])
    assert shown.exit_code == 0, shown.output
    data = json.loads(shown.output)
    assert data["fields"]["customer.name"]["value"] == "Ada Lovelace"
    assert data["fields"]["customer.phone"]["provenance"]["author"] == "supervisor@example.com"
    assert {"system": "erp", "local_id": "SO-5521"} in data["xrefs"]
    assert {e["outcome"] for e in data["history"]} >= {"applied", "not_owner", "stale", "invalid_value"}

    table = runner.invoke(app, ["ticket", "show", ticket_id, "--history"])
    assert table.exit_code == 0 and "Ada Lovelace" in table.output and "not_owner" in table.output


def test_ticket_show_unknown_and_malformed(env: str) -> None:
    """An unknown ticket exits 1 saying so; a malformed ID exits 2 explaining the format."""
    runner.invoke(app, ["db", "upgrade"])
    unknown = runner.invoke(app, ["ticket", "show", "20260213-SVC-00042"])
    assert unknown.exit_code == 1 and "no ticket 20260213-SVC-00042" in unknown.output
    malformed = runner.invoke(app, ["ticket", "show", "SVC-42"])
    assert malformed.exit_code == 2 and "YYYYMMDD-BIZ-NNNNN" in malformed.output


def test_db_upgrade_creates_the_schema(env: str) -> None:
    """`tickethub db upgrade` says the database is up to date, run once or twice."""
    for _ in range(2):
        result = runner.invoke(app, ["db", "upgrade"])
        assert result.exit_code == 0 and "up to date" in result.output


def test_mappings_check_prints_the_ownership_matrix(env: str) -> None:
    """`mappings check` shows which system owns, reads and writes each canonical field."""
    result = runner.invoke(app, ["mappings", "check"])
    assert result.exit_code == 0, result.output
    row = next(line for line in result.output.splitlines() if "production.progress" in line)
    cells = [c.strip() for c in row.split("│")[1:-1]]
    assert cells[0] == "production.progress"
    assert "OWNER rw" in cells and "w" in cells and "no problems" in result.output


def test_mappings_check_lists_every_problem_with_file_key_and_fix(env: str, tmp_path: Path) -> None:
    """A broken mapping directory makes `mappings check` exit 2 and name each problem's file and key."""
    broken = tmp_path / "maps"
    shutil.copytree(DEFAULT_DIR, broken, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    text = (broken / "mes.toml").read_text().replace('[fields."production.progress"]', '[fields."production.progres"]')
    (broken / "mes.toml").write_text(text)
    (broken / "tickethub.toml").write_text('[hub]\nmappings_dir = "."\n')
    result = runner.invoke(app, ["--config", str(broken / "tickethub.toml"), "mappings", "check"])
    assert result.exit_code == 2
    output = " ".join(result.output.split())
    assert "mes.toml, key `fields.production.progres`" in output and "did you mean `production.progress`" in output


def test_a_wrong_configuration_names_file_key_and_fix(env: str, tmp_path: Path) -> None:
    """A misspelt key and a bad business code stop the hub with messages naming the key and the fix."""
    config = tmp_path / "tickethub.toml"
    config.write_text('[hub]\nbusiness_code = "svc1"\n\n[systems.crm]\norigin = true\nrank = 50\n')
    result = runner.invoke(app, ["--config", str(config), "mappings", "check"])
    output = " ".join(result.output.split())
    assert result.exit_code == 2
    assert "key `hub.business_code`" in output and "2 to 6 capital letters" in output
    assert "key `systems.crm.rank`" in output and "mapping file" in output


def test_api_refuses_to_start_without_a_token(env: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """`tickethub api` without the token variable exits at once naming the variable to set."""
    monkeypatch.delenv("TICKETHUB_API_TOKEN", raising=False)
    result = runner.invoke(app, ["api"])
    assert result.exit_code == 2 and "TICKETHUB_API_TOKEN" in result.output


def test_worker_refuses_unknown_queues(env: str) -> None:
    """`tickethub worker --queues` names the queues it knows when given another."""
    runner.invoke(app, ["db", "upgrade"])
    result = runner.invoke(app, ["worker", "--queues", "events,emails"])
    assert result.exit_code == 2 and "events and/or deliveries" in result.output and "emails" in result.output


def test_dlq_replay_needs_a_selection(env: str) -> None:
    """`tickethub dlq replay` with no IDs and no filter refuses rather than replaying everything."""
    result = runner.invoke(app, ["dlq", "replay"])
    assert result.exit_code == 2 and "--all" in result.output


def test_dlq_list_is_empty_on_a_new_database(env: str) -> None:
    """`tickethub dlq list --json` prints an empty list when nothing is dead-lettered."""
    runner.invoke(app, ["db", "upgrade"])
    result = runner.invoke(app, ["dlq", "list", "--json"])
    assert result.exit_code == 0 and json.loads(result.output) == []


def test_delivery_settings_are_validated(env: str, tmp_path: Path) -> None:
    """A misspelt or negative [delivery] setting stops the hub naming the key."""
    config = tmp_path / "tickethub.toml"
    config.write_text('[delivery]\nbackoff_base_seconds = -1\nretries = 3\n\n[systems.crm]\norigin = true\n')
    result = runner.invoke(app, ["--config", str(config), "mappings", "check"])
    output = " ".join(result.output.split())
    assert result.exit_code == 2
    assert "key `delivery.backoff_base_seconds`" in output and "key `delivery.retries`" in output
    assert "retry_horizon_seconds" in output  # the fix lists the keys [delivery] takes


def test_stats_reports_the_service_metrics_as_json_and_as_tables(env: str) -> None:
    """`tickethub stats`: the sample ticket went new -> assigned (two accepted status changes, one stay in
    `new`) and its writes are still owed (it is waiting for its systems); --since in the future counts none."""
    _sample(env)
    shown = runner.invoke(app, ["stats", "--json", "--since", "2000-01-01T00:00:00Z"])
    assert shown.exit_code == 0, shown.output
    data = json.loads(shown.output)
    assert data["status_accepted"] == 2 and data["status_refused"] == {}
    assert data["state_seconds"]["new"]["count"] == 1
    assert data["flow_waiting"] == 1 and data["flow_seconds"]["count"] == 0
    later = json.loads(runner.invoke(app, ["stats", "--json", "--since", "2999-01-01T00:00:00Z"]).output)
    assert later["status_accepted"] == 0 and later["state_seconds"] == {}
    table = runner.invoke(app, ["stats", "--since", "2000-01-01"])
    assert table.exit_code == 0 and "time in each state" in table.output and "first-attempt" in table.output
    assert runner.invoke(app, ["stats", "--since", "yesterday"]).exit_code == 2
