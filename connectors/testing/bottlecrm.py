"""The BottleCRM connector's contract, the generic one (`ConnectorContract`) and BottleCRM's own: the same
assertions run against the sandbox twin (fast, offline) and against the real BottleCRM (tests/peers). A
subclass provides the `peer` fixture; a behaviour that passes on the real system and fails on the twin
means the twin is wrong."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from connectors.bottlecrm.connector import BottleCRMConnector
from connectors.bottlecrm.plugin import CONNECTOR_TYPE
from connectors.bottlecrm.signing import verify_bottlecrm
from connectors.testing import ConnectorContract, ContractPeer
from hub.core.canonical import JsonScalar
from hub.core.ports import ConnectorError, RecordNotFound, WriteRequest


@dataclass
class Peer:
    connector: BottleCRMConnector  # acting with the hub's token
    owner_email: str  # whose token it is: the author of the connector's writes
    secret: str  # of the webhook registered for the hub
    deliveries: Callable[[], list[tuple[dict[str, str], bytes]]]  # webhooks received so far (headers, body)
    bad_token_connector: BottleCRMConnector  # the same system with a token it does not know


def _request(ticket: str, local_id: str | None = None, **fields: JsonScalar) -> WriteRequest:
    return WriteRequest(delivery_id=1, ticket_id=ticket, system="crm", local_id=local_id, fields=fields, attempt=1)


def _ticket() -> str:
    return f"20261123-SVC-{uuid.uuid4().int % 10**8:08d}"


class BottleCRMContract(ConnectorContract):
    @pytest.fixture
    def contract(self, peer: Peer) -> ContractPeer:
        """The connector contract every type passes, on the same CRM."""
        return ContractPeer(CONNECTOR_TYPE, peer.connector, "crm",
                            create_fields={"case.status": "New", "contact.name": "Ada Lovelace"},
                            change_fields={"case.status": "Pending"}, missing_local_id=str(uuid.uuid4()),
                            author=peer.owner_email, bad_credentials=peer.bad_token_connector, secret="bcrm_pat_wrong")

    def test_create_makes_a_case_with_its_contact_that_reads_back(self, peer: Peer) -> None:
        """A ticket written to the CRM becomes a case named by its global ID, with the customer as contact."""
        ticket = _ticket()
        result = peer.connector.create(_request(ticket, **{
            "case.status": "New", "case.description": "Crank jams at column 4",
            "contact.name": "Ada Lovelace", "contact.phone": "+44 20 7946 0000", "contact.email": "ada@example.com"}))
        assert result.status_code == 200 and result.local_id

        [record] = peer.connector.read(result.local_id)
        assert record.local_id == result.local_id and record.system == "crm"
        assert record.fields["case"]["name"] == ticket
        assert record.fields["case"]["status"] == "New"
        assert record.fields["case"]["description"] == "Crank jams at column 4"
        contact = record.fields["contact"]
        assert (contact["name"], contact["phone"], contact["email"]) == (
            "Ada Lovelace", "+44 20 7946 0000", "ada@example.com")
        assert record.author == peer.owner_email
        assert record.modified_at.tzinfo is not None

    def test_write_changes_case_and_contact_fields_and_names_the_author(self, peer: Peer) -> None:
        """Writing status and phone updates the case and its contact; the activity names who wrote."""
        created = peer.connector.create(_request(_ticket(), **{"contact.name": "Ada Lovelace"}))
        assert created.local_id
        [before] = peer.connector.read(created.local_id)
        result = peer.connector.write(_request("x", created.local_id, **{
            "case.status": "Assigned", "contact.phone": "+44 20 7946 0001"}))
        assert result.status_code == 200
        [after] = peer.connector.read(created.local_id)
        assert after.fields["case"]["status"] == "Assigned"
        assert after.fields["contact"]["phone"] == "+44 20 7946 0001"
        assert after.author == peer.owner_email
        assert after.modified_at >= before.modified_at and after.version != before.version

    def test_a_value_the_crm_refuses_is_a_permanent_failure(self, peer: Peer) -> None:
        """Status Duplicate (only a merge may set it) is refused with 400, which the hub dead-letters."""
        created = peer.connector.create(_request(_ticket()))
        assert created.local_id
        result = peer.connector.write(_request("x", created.local_id, **{"case.status": "Duplicate"}))
        assert result.status_code == 400 and "status" in (result.error or "")
        assert "Duplicate" not in BottleCRMConnector.SCHEMA["case.status"].choices

    def test_an_unknown_case_is_not_found(self, peer: Peer) -> None:
        """Reading a case id the CRM does not have raises RecordNotFound."""
        with pytest.raises(RecordNotFound):
            peer.connector.read(str(uuid.uuid4()))

    def test_a_token_the_crm_refuses_is_a_clear_error(self, peer: Peer) -> None:
        """With a wrong token the CRM answers 403, and the connector says to check the token."""
        with pytest.raises(ConnectorError, match="refused the token"):
            peer.bad_token_connector.read(str(uuid.uuid4()))

    def test_read_all_pages_through_every_case(self, peer: Peer) -> None:
        """Reading all records pages with limit/offset until cases_count, missing none."""
        made = {peer.connector.create(_request(_ticket())).local_id for _ in range(3)}
        peer.connector.page_size = 2
        seen = {record.local_id for record in peer.connector.read_all()}
        assert made <= seen

    def test_a_change_sends_a_signed_webhook_the_connector_understands(self, peer: Peer) -> None:
        """A case update fires ticket.updated, signed so that the hub verifies it, naming the case and time."""
        created = peer.connector.create(_request(_ticket()))
        assert created.local_id
        seen = len(peer.deliveries())
        peer.connector.write(_request("x", created.local_id, **{"case.status": "Pending"}))
        deadline = time.monotonic() + 20
        while len(peer.deliveries()) <= seen and time.monotonic() < deadline:
            time.sleep(0.1)
        notices = []
        for headers, body in peer.deliveries()[seen:]:
            assert verify_bottlecrm([peer.secret], headers, body, time.time())
            import json

            notices.extend(BottleCRMConnector.parse_notice(headers, json.loads(body)))
        mine = [n for n in notices if n.local_id == created.local_id and n.kind == "case"]
        assert mine and all(n.modified_at is not None for n in mine)
