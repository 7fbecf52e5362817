"""`tickethub demo --fast --keep` as a user runs it: a subprocess in a clean environment (no configuration, no
TICKETHUB_* settings, its own working directory). Each step of the story is checked through the hub's HTTP API
while the demo keeps everything running; Ctrl-C then stops the hub and the twins."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from demo.story import BEHIND_BACK_ADDRESS, CASE, CUSTOMER, ERP_PHONE, ERP_USER, MISSED_EMAIL, NEW_ADDRESS, WAYBILL
from tests.e2e.harness import free_port, wait_until

pytestmark = pytest.mark.e2e

TOKEN = "demo-test-token"


def test_the_demo_plays_every_step_and_the_hub_shows_each_outcome(tmp_path: Path) -> None:
    port, workdir = free_port(), tmp_path / "demo"
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path), "LANG": "C.UTF-8",
           "TICKETHUB_API_TOKEN": TOKEN, "COLUMNS": "120"}
    log = (tmp_path / "demo.out").open("wb")
    demo = subprocess.Popen([sys.executable, "-m", "hub", "demo", "--fast", "--keep", "--port", str(port),
                             "--workdir", str(workdir)], cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT)
    http = httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)

    def get(path: str, **params: Any) -> Any:
        answer = http.get(path, params=params)
        assert answer.status_code == 200, (path, answer.status_code, answer.text)
        return answer.json()

    def delivered(system: str) -> list[dict[str, Any]]:
        return [d for d in get("/deliveries", system=system, limit=1000)["deliveries"] if d["state"] == "delivered"]

    try:
        summary_file = workdir / "demo.json"
        wait_until(lambda: summary_file.exists() or demo.poll() is not None, 240, 0.5, "the story to finish")
        output = (tmp_path / "demo.out").read_text(errors="replace")
        assert summary_file.exists(), output
        summary = json.loads(summary_file.read_text(encoding="utf-8"))
        assert summary["ok"], output
        assert [s["ok"] for s in summary["steps"]] == [True] * 6

        # 1. the CRM's case got a global ID; the ERP, MES and WMS records were created for it and linked
        ticket_id = get("/tickets", system="crm", local_id=CASE)["ticket_id"]
        assert re.fullmatch(r"\d{8}-SVC-\d{5}", ticket_id) and summary["ticket_id"] == ticket_id
        ticket = get(f"/tickets/{ticket_id}")
        assert {x["system"] for x in ticket["xrefs"]} == {"crm", "erp", "mes", "wms", "courier"}
        fields = {name: f["value"] for name, f in ticket["fields"].items()}
        assert fields["customer.name"] == CUSTOMER["contact.name"]
        assert fields["product.serial"] == CUSTOMER["case.serial_number"]
        erp_writes = delivered("erp")
        assert any(d["fields"].get("customer.name") == CUSTOMER["contact.name"] for d in erp_writes)
        mes_writes = get("/deliveries", system="mes", limit=1000)["deliveries"]
        assert any(d["fields"].get("product.serial") == CUSTOMER["case.serial_number"] for d in mes_writes)

        # 2. the new address reached the ERP and the WMS (and 6. the WMS's copy was repaired back to it)
        assert fields["customer.address"] == NEW_ADDRESS
        wms_writes = delivered("wms")
        assert sum(d["fields"].get("customer.address") == NEW_ADDRESS for d in wms_writes) >= 2  # sent, repaired
        assert any(d["fields"].get("customer.address") == NEW_ADDRESS for d in erp_writes)

        # 3. the ERP's phone edit: refused and recorded with its author, the CRM's phone written back to the ERP
        history = get(f"/tickets/{ticket_id}/history")["entries"]
        [refused] = [e for e in history if e["outcome"] == "not_owner"]
        assert (refused["system"], refused["author"], refused["field"]) == ("erp", ERP_USER, "customer.phone")
        assert refused["new_value"] == ERP_PHONE and fields["customer.phone"] == CUSTOMER["contact.phone"]
        phones = [d for d in erp_writes if d["fields"].get("customer.phone") == CUSTOMER["contact.phone"]]
        restored = [d for d in phones if d["created_at"] >= refused["recorded_at"]]
        assert phones and restored  # the first write, and the restore after the refusal

        # 4. shipped with a waybill, the parcel subscribed with the courier and followed to its delivery
        assert fields["shipment.waybill"] == WAYBILL and fields["shipment.status"] == "delivered"
        assert fields["production.progress"] == 100
        courier = get("/deliveries", system="courier")["deliveries"]
        assert [d["state"] for d in courier] == ["delivered"] and courier[0]["fields"]["shipment.waybill"] == WAYBILL

        # 5. resolved refused for lack of evidence, then accepted after the courier's delivery
        [no_evidence] = [e for e in history if e["outcome"] == "no_evidence"]
        assert no_evidence["system"] == "crm" and no_evidence["new_value"] == "resolved"
        assert fields["status"] == "resolved"

        # 6. the reconciliation run: the lost e-mail applied, the WMS's edit repaired, the courier not checked
        [run] = get("/reconcile/runs")["runs"]
        assert run["state"] == "done" and run["discrepancies"] == 2 and summary["reconcile_run"] == run["id"]
        report = get(f"/reconcile/runs/{run['id']}.json")
        items = {(i["kind"], i["system"], i["field"]): i for i in report["items"]}
        assert set(items) == {("missed_change", "crm", "customer.email"), ("drift", "wms", "customer.address")}
        assert items[("drift", "wms", "customer.address")]["responsible"] == "clerk.li"
        assert BEHIND_BACK_ADDRESS in json.dumps(items[("drift", "wms", "customer.address")]["values"],
                                                 ensure_ascii=False)
        assert all(i["action"] == "repaired" for i in items.values())
        assert fields["customer.email"] == MISSED_EMAIL
        assert [n["system"] for n in report["not_checked"]] == ["courier"]
        for fmt in ("json", "csv", "html"):
            assert (workdir / "reports" / f"reconcile-{run['id']}.{fmt}").stat().st_size > 0

        # the console serves the run to an operator who logs in with the token and a name
        login = http.get("/console/runs", follow_redirects=True)
        assert login.status_code == 200 and 'action="/console/login"' in login.text
        csrf = re.search(r'name="csrf" value="([^"]+)"', login.text)
        assert csrf is not None
        page = http.post("/console/login", data={"csrf": csrf.group(1), "next": f"/console/runs/{run['id']}",
                                                 "name": "ops", "secret": TOKEN}, follow_redirects=True)
        assert page.status_code == 200 and "customer.address" in page.text and "clerk.li" in page.text

        # --keep: still serving; Ctrl-C stops the hub and the twins, and the demo exits 0
        assert demo.poll() is None
        demo.send_signal(signal.SIGINT)
        assert demo.wait(60) == 0, (tmp_path / "demo.out").read_text(errors="replace")
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
    except BaseException:
        print((tmp_path / "demo.out").read_text(errors="replace"))
        hub_log = workdir / "hub.log"
        print(hub_log.read_text(errors="replace")[-5000:] if hub_log.exists() else "(no hub log)")
        raise
    finally:
        http.close()
        if demo.poll() is None:
            demo.kill()
            demo.wait()
        log.close()
