"""The HTML report as an operator sees it: rendered by headless Chromium, summary and table on screen, no
console errors. The screenshot is kept in test-artifacts/ (CI installs Chromium, as .ci/run does)."""

from __future__ import annotations

import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from reconcile.report import Item, NotChecked, RunInfo, RunReport, TrendPoint, Value, summarise, to_html
from tests.e2e.harness import chromium

pytestmark = pytest.mark.e2e
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
T0 = datetime(2026, 12, 4, 2, 0, tzinfo=UTC)


def _report() -> RunReport:
    def value(source: str, v: object, author: str, rank: int, minutes: int) -> Value:
        return Value(source=source, system=source if source != "golden" else "crm", value=v, author=author,
                     author_rank=rank, system_rank=50, modified_at=T0 - timedelta(minutes=minutes),
                     owner=source in ("golden", "crm"))

    items = [
        Item(id=1, ticket_id="20261204-SVC-00001", kind="missed_change", system="crm", field="customer.name",
             values=[value("crm", "王小明", "agent@example.com", 50, 1),
                     value("golden", "王晓明", "agent@example.com", 50, 9)],
             winner=value("crm", "王小明", "agent@example.com", 50, 1), rule="newest",
             reason="agent@example.com in crm changed it 480 s after the hub's record", action="repaired"),
        Item(id=2, ticket_id="20261204-SVC-00002", kind="drift", system="erp", field="customer.phone",
             values=[value("golden", "+86 10 5555 0002", "agent@example.com", 50, 30),
                     value("erp", "+86 10 5555 9999", "accounting", 60, 2)],
             winner=value("golden", "+86 10 5555 0002", "agent@example.com", 50, 30), rule="newest",
             reason="erp does not own it", action="repaired", responsible="accounting"),
        Item(id=3, ticket_id="20261204-SVC-00003", kind="conflict", system="erp", field="status",
             values=[value("crm", "assigned", "agent@example.com", 10, 1), value("erp", "cancelled", "x", 10, 1)],
             rule="flagged", reason="equal ranks within 2 s: an operator decides", action="awaiting_review",
             awaiting_review=True),
        Item(id=4, ticket_id=None, kind="orphan", system="erp", local_id="ERP-77", reason="no ticket links it",
             action="reported"),
    ]
    run = RunInfo(id=7, state="done", mode="full", dry_run=False, since=None, started_at=T0,
                  finished_at=T0 + timedelta(minutes=3), systems=["crm", "erp", "mes", "wms"])
    return RunReport(run=run, summary=summarise(items, 3, 9), items=items,
                     not_checked=[NotChecked(system="wms", reason="no export_url")],
                     trend=[TrendPoint(run_id=6, started_at=T0 - timedelta(days=1), discrepancies=12,
                                       awaiting_review=2)])


def test_the_html_report_renders_with_its_summary_and_table_visible_and_no_console_errors(tmp_path: Path) -> None:
    """Headless Chromium loads the page offline: the DOM has the summary cards and the discrepancies table with
    Chinese text intact, the console logs no error, and the screenshot is a real picture."""
    browser = chromium()
    page = tmp_path / "report.html"
    page.write_bytes(to_html(_report()))
    shot = tmp_path / "report.png"
    common = [browser, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
              "--no-first-run", "--user-data-dir=" + str(tmp_path / "profile"), "--window-size=1400,1800"]
    dom = subprocess.run([*common, "--enable-logging=stderr", "--v=0", "--dump-dom", page.as_uri()],
                         capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert 'id="summary"' in dom.stdout and 'id="items"' in dom.stdout
    assert "discrepancies" in dom.stdout and "王小明" in dom.stdout and "Awaiting review (1)" in dom.stdout
    console = [line for line in dom.stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line]
    assert console == [], console
    taken = subprocess.run([*common, f"--screenshot={shot}", page.as_uri()], capture_output=True, text=True,
                           timeout=120)
    assert taken.returncode == 0 and shot.exists(), taken.stderr[-2000:]
    png = shot.read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 20_000  # text and tables, not a blank page
    ARTIFACTS.mkdir(exist_ok=True)
    shutil.copy(shot, ARTIFACTS / "reconcile-report.png")
