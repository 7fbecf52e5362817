"""The Tryton connector's contract, the generic one (`ConnectorContract`) and Tryton's own: the same
assertions run against the sandbox twin (tests/unit, offline) and against a real Tryton 8.2 (tests/peers).
A subclass provides the `peer` fixture; a behaviour that passes on the real server and fails on the twin
means the twin is wrong."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest

from connectors.testing import ConnectorContract, ContractPeer
from connectors.tryton.connector import TrytonConnector
from connectors.tryton.plugin import CONNECTOR_TYPE, TrytonOptions
from connectors.tryton.rpc import TrytonFault, TrytonSession
from hub.core.ports import ConnectorError, RecordNotFound, WriteRequest


@dataclass
class Peer:
    connector: Callable[[str], TrytonConnector]  # model -> a connector acting as the hub's user
    hub_login: str
    staff: TrytonSession  # a member of staff acting behind the hub's back
    product: str  # a product code that exists, producible and salable
    product_id: int
    unit_id: int
    bad_password: TrytonConnector  # the MES with a password Tryton does not accept


_MICRO = timedelta(microseconds=1)


def _ticket() -> str:
    return f"20261130-SVC-{uuid.uuid4().int % 10**5:05d}"


def _request(ticket: str, system: str, local_id: str | None = None, **fields: Any) -> WriteRequest:
    return WriteRequest(delivery_id=1, ticket_id=ticket, system=system, local_id=local_id, fields=fields, attempt=1)


class TrytonContract(ConnectorContract):
    @pytest.fixture
    def contract(self, peer: Peer) -> ContractPeer:
        """The connector contract every type passes, on the ERP role (sales)."""
        return ContractPeer(CONNECTOR_TYPE, peer.connector("sale.sale"), "erp",
                            create_fields={"party.name": "Ada Lovelace", "description": "Crank jams"},
                            change_fields={"description": "Crank jams at column 4"}, missing_local_id="987654",
                            author=peer.hub_login, bad_credentials=peer.bad_password, secret="not-the-password",
                            options=TrytonOptions(database="tickethub", model="sale.sale"))

    def _production(self, peer: Peer) -> tuple[str, str]:
        ticket = _ticket()
        created = peer.connector("production").create(_request(ticket, "mes", **{"product.code": peer.product}))
        assert created.status_code == 200 and created.local_id, created.error
        return ticket, created.local_id

    def _staff(self, peer: Peer, method: str, *params: Any) -> Any:
        return peer.staff.call(method, *params, peer.staff.context())

    def test_create_makes_a_production_order_for_the_ticket_that_reads_back(self, peer: Peer) -> None:
        """A ticket written to the MES becomes a draft production order of its product, referenced by its ID."""
        ticket, local_id = self._production(peer)

        [record] = peer.connector("production").read(local_id)
        assert record.local_id == local_id and record.system == "mes"
        assert record.fields["reference"] == ticket
        assert record.fields["product.code"] == peer.product
        assert record.fields["state"] == "draft"
        assert record.author == peer.hub_login
        assert record.modified_at.tzinfo is not None

    def test_workflow_buttons_move_the_state_and_make_the_presser_the_author(self, peer: Peer) -> None:
        """A planner pressing wait, assign and run is the author of the running order."""
        _, local_id = self._production(peer)
        for button in ("wait", "assign_try", "run"):
            self._staff(peer, f"model.production.{button}", [int(local_id)])

        [record] = peer.connector("production").read(local_id)
        assert record.fields["state"] == "running"
        assert record.author == peer.staff.login

    def test_a_button_the_state_does_not_allow_is_refused_as_a_user_error(self, peer: Peer) -> None:
        """Running a draft order is refused in the answer's body, and the order stays as it was."""
        _, local_id = self._production(peer)
        with pytest.raises(TrytonFault) as refused:
            self._staff(peer, "model.production.run", [int(local_id)])
        assert refused.value.kind == "UserError"
        [record] = peer.connector("production").read(local_id)
        assert record.fields["state"] == "draft"

    def test_poll_returns_what_changed_since_in_modified_order_never_edited_records_included(
            self, peer: Peer) -> None:
        """A poll from a moment returns the records created or edited since, oldest change first."""
        mes = peer.connector("production")
        _, first = self._production(peer)
        [before] = mes.read(first)
        _, second = self._production(peer)  # never edited: only a create_date
        self._staff(peer, "model.production.wait", [int(first)])  # edited after `second` was created

        polled = [r for r in mes.poll(before.modified_at) if r.local_id in (first, second)]
        assert [r.local_id for r in polled] == [second, first]
        stamps = [(r.modified_at, int(r.local_id)) for r in mes.poll(before.modified_at)]
        assert stamps == sorted(stamps)
        [later] = mes.read(first)
        assert all(r.local_id != first or r.modified_at == later.modified_at for r in polled)
        assert first not in [r.local_id for r in mes.poll(later.modified_at + _MICRO)]

    def test_poll_pages_by_modified_at_and_id_without_skipping_or_repeating(self, peer: Peer) -> None:
        """Read a page at a time, a burst of records comes back whole, each once, in order."""
        mes = peer.connector("production")
        small = TrytonConnector("mes", _base(mes), mes.session.database, mes.session.login,
                                mes.session._password, "production", mes.session.client, page_size=2)
        _, first = self._production(peer)
        [start] = mes.read(first)
        made = [first] + [self._production(peer)[1] for _ in range(4)]
        self._staff(peer, "model.production.wait", [int(made[2])])

        polled = [r.local_id for r in small.poll(start.modified_at)]
        assert sorted(polled, key=int) == sorted(set(polled), key=int)  # none twice
        assert set(made) <= set(polled)
        assert polled[-1] == made[2]  # the edited one changed last

    def test_write_changes_a_field_and_the_hub_becomes_the_author(self, peer: Peer) -> None:
        """The hub writing the sale's description leaves its own user as the author: its echo is recognisable."""
        erp = peer.connector("sale.sale")
        ticket = _ticket()
        created = erp.create(_request(ticket, "erp", **{"party.name": f"Ada {ticket}", "description": "Crank jams"}))
        assert created.status_code == 200 and created.local_id
        self._staff(peer, "model.sale.sale.write", [int(created.local_id)], {"comment": "called the customer"})
        [edited] = erp.read(created.local_id)
        assert edited.author == peer.staff.login

        result = erp.write(_request(ticket, "erp", created.local_id, description="Crank jams at column 4"))
        assert result.status_code == 200, result.error
        [record] = erp.read(created.local_id)
        assert record.fields["description"] == "Crank jams at column 4"
        assert record.fields["comment"] == "called the customer"  # the staff's edit is kept
        assert record.author == peer.hub_login
        assert record.modified_at > edited.modified_at

    def test_a_sale_for_a_new_customer_creates_the_party_with_an_address_so_it_can_be_quoted(
            self, peer: Peer) -> None:
        """The ERP gets a quote-ready sale: the customer becomes a party with an address the sale invoices to."""
        erp = peer.connector("sale.sale")
        name = f"Grace {uuid.uuid4().hex[:8]}"
        created = erp.create(_request(_ticket(), "erp", **{"party.name": name}))
        assert created.status_code == 200 and created.local_id, created.error
        sale_id = int(created.local_id)
        self._staff(peer, "model.sale.sale.write", [sale_id], {"lines": [["create", [{
            "type": "line", "product": peer.product_id, "quantity": 1.0, "unit": peer.unit_id,
            "unit_price": Decimal("120.00")}]]]})
        self._staff(peer, "model.sale.sale.quote", [sale_id])

        [record] = erp.read(created.local_id)
        assert record.fields["party.name"] == name
        assert record.fields["state"] == "quotation"
        assert Decimal(record.fields["total_amount"]) == Decimal("120.00")

    def test_a_stale_timestamp_is_refused_as_a_concurrency_conflict(self, peer: Peer) -> None:
        """A write carrying the _timestamp of a version someone has since changed is refused, not applied."""
        _, local_id = self._production(peer)
        mes = peer.connector("production")
        [before] = mes.read(local_id)
        self._staff(peer, "model.production.wait", [int(local_id)])

        with pytest.raises(TrytonFault) as refused:
            mes.session.call("model.production.write", [int(local_id)], {"reference": "overwritten"},
                             mes.session.context(_timestamp={f"production,{local_id}": before.version}))
        assert refused.value.kind == "ConcurrencyException"
        [after] = mes.read(local_id)
        assert after.fields["reference"] != "overwritten"

    def test_a_missing_record_is_not_found_and_a_write_to_it_is_permanent(self, peer: Peer) -> None:
        """Reading or writing a production order that does not exist says so; no retry can help the write."""
        mes = peer.connector("production")
        with pytest.raises(RecordNotFound):
            mes.read("987654")
        result = mes.write(_request(_ticket(), "mes", "987654", **{"product.code": peer.product}))
        assert result.status_code == 404 and result.permanent

    def test_an_unknown_product_is_refused_before_anything_is_created(self, peer: Peer) -> None:
        """A product code Tryton does not know is a permanent refusal, and no order appears."""
        mes = peer.connector("production")
        ticket = _ticket()
        result = mes.create(_request(ticket, "mes", **{"product.code": "NO-SUCH-PART"}))
        assert result.status_code == 422 and result.permanent
        assert "NO-SUCH-PART" in (result.error or "")
        assert ticket not in [r.fields["reference"] for r in mes.poll(None)]

    def test_a_button_that_does_not_exist_is_forbidden_not_a_login_problem(self, peer: Peer) -> None:
        """Tryton answers 403 to a method it does not expose; the session stays good for the next call."""
        _, local_id = self._production(peer)
        mes = peer.connector("production")
        with pytest.raises(TrytonFault) as refused:
            mes.session.call("model.production.finish", [int(local_id)], mes.session.context())
        assert refused.value.kind == "Forbidden" and "model.production.finish" in str(refused.value)
        [record] = mes.read(local_id)
        assert record.fields["state"] == "draft"

    def test_a_session_that_ended_is_renewed_by_logging_in_again(self, peer: Peer) -> None:
        """After Tryton forgets the hub's session (timeout, logout), the next call logs in again and works."""
        _, local_id = self._production(peer)
        mes = peer.connector("production")
        ended = mes.session.context() and mes.session._header
        mes.session.call("common.db.logout")
        [record] = mes.read(local_id)
        assert record.local_id == local_id
        assert mes.session._header not in (None, ended)  # a new session, not the old one still accepted

    def test_a_wrong_password_is_a_connector_error_that_names_the_user_not_the_password(self, peer: Peer) -> None:
        with pytest.raises(ConnectorError) as refused:
            peer.bad_password.read("1")
        assert peer.bad_password.session.login in str(refused.value)
        assert peer.bad_password.session._password not in str(refused.value)
        result = peer.bad_password.create(_request(_ticket(), "mes", **{"product.code": peer.product}))
        assert result.permanent and result.status_code == 422


def _base(connector: TrytonConnector) -> str:
    return connector.session.url.rsplit("/", 3)[0]
