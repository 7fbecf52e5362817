"""The CRM role through the hub against a real BottleCRM: a case opened there becomes a ticket, a
customer's phone changed there reaches a subscribed system, and the hub's own write does not echo."""

from __future__ import annotations

import shutil
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import uvicorn

from connectors.bottlecrm.connector import BottleCRMConnector
from hub.bootstrap import Hub, bootstrap
from hub.config import load_settings
from hub.core.ports import WriteRequest
from hub.http.app import create_app
from hub.mapping_files import DEFAULT_DIR
from hub.store.engine import make_engine
from hub.store.migrate import upgrade
from hub.usecases.deliver import deliver_once
from hub.usecases.process import process_event
from tests.e2e.harness import free_port, wait_until
from tests.fakes import RecordingWriter
from tests.peers.bottlecrm import BottleCRM

pytestmark = [pytest.mark.peer, pytest.mark.integration]
HUB_USER = "tickethub@example.com"


def hub_user_token(crm: BottleCRM, email: str) -> str:
    """A second BottleCRM user in the org (the hub's own), and its personal access token."""
    crm.admin("devlogin", email, "--create")
    crm.admin("shell", "-c", (
        "from common.models import User, Profile, Org; "
        f"u = User.objects.get(email='{email}'); o = Org.objects.get(id='{crm.org_id}'); "
        "Profile.objects.get_or_create(user=u, org=o, defaults={'role': 'ADMIN', 'is_active': True})"))
    printed = crm.admin("devlogin", email, "--org", crm.org_id).stdout
    jwt = next(line.split()[-1] for line in printed.splitlines() if line.startswith("access_token:"))
    answer = httpx.post(f"{crm.base_url}/api/profile/tokens/", json={"name": "tickethub-hub"},
                        headers={"Authorization": f"Bearer {jwt}"}, timeout=30)
    assert answer.status_code == 201, answer.text
    return str(answer.json()["token"])


@dataclass
class LiveHub:
    hub: Hub
    crm: BottleCRMConnector
    wms: RecordingWriter

    def connector_for(self, system: str):  # type: ignore[no-untyped-def]
        return {"crm": self.crm, "wms": self.wms}[system]

    def process_all(self) -> list[str]:
        with self.hub.store.unit_of_work() as uow:
            ids = uow.deliveries.take_undispatched_events(self.hub.clock(), 1000)
            uow.commit()
        return [t for e in ids if (t := process_event(self.hub, e, self.connector_for).ticket_id)]

    def deliver_all(self) -> None:
        with self.hub.store.unit_of_work() as uow:
            ids = [d["id"] for d in uow.deliveries.find("pending", limit=1000)]
        for delivery_id in sorted(ids):
            deliver_once(self.hub, delivery_id, self.connector_for)

    def received(self) -> int:
        with self.hub.store.unit_of_work() as uow:
            return uow.inbox.count()


@pytest.fixture
def live(bottlecrm: BottleCRM, tmp_path: Path) -> Iterator[LiveHub]:
    maps = tmp_path / "maps"
    shutil.copytree(DEFAULT_DIR, maps, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    # the MES owns the diagnosis here, so the hub has a field to write into BottleCRM
    (maps / "mes.toml").write_text('[system]\nrank = 30\n[fields."fault.description"]\nfield = "production.notes"\n'
                                   'owner = true\n')
    text = (maps / "bottlecrm.toml").read_text()
    (maps / "bottlecrm.toml").write_text(text.replace('field = "case.description"\nowner = true',
                                                      'field = "case.description"\ndirection = "write"'))
    port = free_port()
    hook_url = f"http://127.0.0.1:{port}/webhooks/crm"
    secret = bottlecrm.register_webhook(hook_url, ["ticket.created", "ticket.updated", "contact.created",
                                                   "contact.updated"])
    config = tmp_path / "tickethub.toml"
    config.write_text(f"""[hub]
mappings_dir = "{maps}"
database_url = "sqlite:///{tmp_path / 'hub.db'}"
[systems.crm]
type = "bottlecrm"
mapping = "bottlecrm"
origin = true
base_url = "{bottlecrm.base_url}"
hub_author = "{HUB_USER}"
[systems.wms]
base_url = "http://wms.test/"
[systems.mes]
base_url = "http://mes.test/"
""")
    settings = load_settings(config, environ={})
    engine = make_engine(settings.hub.database_url)
    upgrade(engine)
    hub = bootstrap(settings, engine=engine)
    server = uvicorn.Server(uvicorn.Config(create_app(hub, "token", {"crm": [secret]}), host="127.0.0.1",
                                           port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_until(lambda: server.started, 30, what="the hub API to start")
    client = httpx.Client(timeout=30)
    token = hub_user_token(bottlecrm, HUB_USER)
    yield LiveHub(hub, BottleCRMConnector("crm", bottlecrm.base_url, token, client), RecordingWriter("wms"))
    bottlecrm.remove_webhook(hook_url)
    server.should_exit = True
    thread.join(10)
    client.close()
    engine.dispose()


def _open_case(crm: BottleCRM, live: LiveHub, name: str) -> tuple[str, str, str]:
    contact = crm.http.post("/api/contacts/", json={"first_name": "Ada", "last_name": "Lovelace",
                                                   "phone": "+44 20 7946 0000",
                                                   "email": f"ada.{uuid.uuid4().hex[:8]}@example.com"})
    assert contact.status_code == 200, contact.text
    contact_id = contact.json()["id"]
    case = crm.http.post("/api/cases/", json={"name": name, "status": "New", "priority": "High",
                                             "description": "Crank jams", "contacts": [contact_id]})
    assert case.status_code == 200, case.text
    case_id = case.json()["id"]
    ticket_ids = wait_until(lambda: live.process_all() or None, 20, 0.2, "the case's webhook to reach the hub")
    return case_id, ticket_ids[0], contact_id


def test_a_case_opened_in_bottlecrm_becomes_a_ticket(bottlecrm: BottleCRM, live: LiveHub) -> None:
    """A case created in the real CRM arrives by signed webhook and gets a global ticket ID with its customer."""
    case_id, ticket_id, _ = _open_case(bottlecrm, live, "Hub: crank jams 1")
    with live.hub.store.unit_of_work() as uow:
        assert uow.tickets.find_by_xref("crm", case_id) == ticket_id
        view = uow.tickets.get(ticket_id)
    assert view.fields["customer.name"].value == "Ada Lovelace"
    assert view.fields["status"].value == "new"
    assert view.fields["status"].provenance.author == bottlecrm.email


def test_a_phone_changed_in_bottlecrm_reaches_the_subscribed_wms(bottlecrm: BottleCRM, live: LiveHub) -> None:
    """A contact's phone changed in the real CRM is written to the subscribed WMS."""
    _, ticket_id, contact_id = _open_case(bottlecrm, live, "Hub: crank jams 2")
    live.deliver_all()
    assert bottlecrm.http.patch(f"/api/contacts/{contact_id}/", json={"phone": "+44 20 7946 0999"}).status_code == 200
    wait_until(lambda: ticket_id in live.process_all(), 20, 0.2, "the contact's webhook to reach the hub")
    live.deliver_all()
    assert live.wms.writes[-1].fields.get("shipment.recipient_phone") == "+44 20 7946 0999"


def test_the_hubs_write_into_bottlecrm_does_not_echo(bottlecrm: BottleCRM, live: LiveHub) -> None:
    """The hub writing the diagnosis into the real CRM hears the webhook its write fires as an echo."""
    case_id, ticket_id, _ = _open_case(bottlecrm, live, "Hub: crank jams 3")
    with live.hub.store.unit_of_work() as uow:
        seen = len(uow.tickets.history(ticket_id))
    before = live.received()
    result = live.crm.write(WriteRequest(1, ticket_id, "crm", case_id, {"case.description": "Worn crank"}, 1))
    assert result.status_code == 200, result.error
    wait_until(lambda: live.received() > before, 20, 0.2, "the write's webhook")
    live.process_all()
    with live.hub.store.unit_of_work() as uow:
        after = uow.tickets.history(ticket_id)[seen:]
        fields = uow.tickets.get(ticket_id).fields
    assert after and {h.outcome for h in after} == {"echo"} and {h.author for h in after} == {HUB_USER}
    assert "fault.description" in {h.field for h in after} and "fault.description" not in fields
    assert fields["status"].value == "new"
