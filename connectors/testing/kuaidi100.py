"""The Kuaidi100 connector's contract, the generic one (`ConnectorContract`) and Kuaidi100's own: signed
queries and subscriptions, signed pushes, and how a parcel's journey reads. A subclass provides the `peer`
fixture; the same assertions run against the sandbox twin (tests/unit) and, given a peer able to move a
parcel and to collect what is pushed to `callback_url`, against the real service.

A courier record is named by what the hub writes to it (`<com>:<num>`), so the generic contract's "change"
re-submits the same parcel (Kuaidi100 answers 501, already tracked, which counts as success) and checks it
still reads back; Kuaidi100 answers `nu` for the `num` it was given; it has no bulk export.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import pytest

from connectors.kuaidi100.connector import Kuaidi100Connector
from connectors.kuaidi100.plugin import CONNECTOR_TYPE
from connectors.kuaidi100.push import KUAIDI100_INBOUND, KUAIDI100_SCHEME
from connectors.testing import ConnectorContract, ContractPeer
from hub.core.canonical import JsonScalar, format_datetime
from hub.core.ports import ConnectorError, WriteRequest
from hub.core.signing import SignatureError


@dataclass
class Peer:
    connector: Kuaidi100Connector  # with the hub's key, customer id and salt
    key: str  # the connector's secrets: no error, result or repr may contain them
    customer: str
    salt: str
    journey: Callable[[Sequence[tuple[str, str]]], tuple[str, str]]  # a parcel that will make these steps
    advance: Callable[[str, str], None]  # the parcel moves one step (and Kuaidi100 pushes it)
    pushes: Callable[[], list[tuple[dict[str, str], bytes]]]  # what reached callback_url so far (headers, body)
    bad_key: Kuaidi100Connector  # the same account with a key Kuaidi100 refuses
    missing: str  # the local ID of a parcel Kuaidi100 has no tracking for


def _request(local_id: str | None = None, **fields: JsonScalar) -> WriteRequest:
    return WriteRequest(delivery_id=1, ticket_id="20261204-SVC-00001", system="courier", local_id=local_id,
                        fields=fields, attempt=1)


class Kuaidi100Contract(ConnectorContract):
    @pytest.fixture
    def contract(self, peer: Peer) -> ContractPeer:
        """The connector contract every type passes, on a parcel that has been collected."""
        com, num = peer.journey([("1", "已揽收"), ("0", "运输中")])
        peer.advance(com, num)
        return ContractPeer(CONNECTOR_TYPE, peer.connector, peer.connector.system,
                            create_fields={"num": num, "com": com}, change_fields={"num": num},
                            missing_local_id=peer.missing, bad_credentials=peer.bad_key, secret=peer.key,
                            read_back_as={"num": "nu"}, bulk_read=False)

    def _secrets(self, peer: Peer) -> tuple[str, ...]:
        return peer.key, peer.customer, peer.salt

    def test_a_signed_query_reads_the_parcel_and_a_wrong_key_is_refused_naming_the_fix(self, peer: Peer) -> None:
        """The query's sign (MD5 of param + key + customer) is accepted with the account's key; with another
        key Kuaidi100 refuses the signature, and the error says what to check without quoting a secret."""
        com, num = peer.journey([("1", "已揽收")])
        peer.advance(com, num)
        [record] = peer.connector.read(f"{com}:{num}")
        assert (record.local_id, record.fields["com"], record.fields["nu"]) == (f"{com}:{num}", com, num)
        with pytest.raises(ConnectorError) as refused:
            peer.bad_key.read(f"{com}:{num}")
        message = str(refused.value)
        assert "credentials_env" in message
        assert not any(secret in message for secret in (*self._secrets(peer), "wrong-key"))

    def test_a_subscription_is_the_parcels_local_id_and_subscribing_again_is_no_error(self, peer: Peer) -> None:
        """Subscribing answers 200 with `<com>:<num>`; the same parcel again (501, already tracked) too."""
        com, num = peer.journey([("1", "已揽收")])
        first = peer.connector.create(_request(num=num, com=com))
        again = peer.connector.write(_request(f"{com}:{num}", num=num))
        assert (first.status_code, first.local_id) == (200, f"{com}:{num}"), first.error
        assert (again.status_code, again.local_id) == (200, f"{com}:{num}"), again.error

    def test_a_subscription_with_a_refused_key_is_permanent_and_hides_the_secrets(self, peer: Peer) -> None:
        """A key Kuaidi100 does not know (600) cannot be retried into working: permanent, and quiet."""
        com, num = peer.journey([("1", "已揽收")])
        result = peer.bad_key.create(_request(num=num, com=com))
        assert result.permanent and result.status_code is not None and result.status_code >= 400
        assert result.error and "credentials_env" in result.error
        assert not any(secret in result.error for secret in self._secrets(peer))

    def test_a_parcel_without_a_known_company_is_refused_before_sending(self, peer: Peer) -> None:
        """No company code (the WMS set no carrier) is refused at once, saying which field to set."""
        result = peer.connector.create(_request(num="SF0000000001"))
        assert result.permanent and result.error and "shipment.carrier" in result.error

    def test_pushes_are_signed_with_the_salt_and_read_as_the_parcel(self, peer: Peer) -> None:
        """What Kuaidi100 pushes verifies with the salt the hub subscribed with (and with no other), decodes
        to its `param`, and parses to the subscribed parcel's record."""
        com, num = peer.journey([("1", "已揽收"), ("0", "运输中")])
        assert peer.connector.create(_request(num=num, com=com)).status_code == 200
        peer.advance(com, num)
        headers, body = peer.pushes()[-1]
        event_id = KUAIDI100_SCHEME.verify([peer.salt], headers, body, time.time())
        assert event_id.startswith("k100-")
        assert KUAIDI100_SCHEME.verify(["old-salt", peer.salt], headers, body, time.time()) == event_id
        with pytest.raises(SignatureError):
            KUAIDI100_SCHEME.verify(["another-salt"], headers, body, time.time())
        payload = KUAIDI100_INBOUND.decode({k.lower(): v for k, v in headers.items()}, body)
        [notice] = CONNECTOR_TYPE.parse_notice(peer.connector.system, payload)
        assert notice.local_id == f"{com}:{num}" and notice.record is not None
        assert notice.record.fields["state"] == "1" and notice.record.author == "kuaidi100"

    def test_a_journey_reads_as_main_states_and_is_delivered_only_when_signed(self, peer: Peer) -> None:
        """Sub-states read as their main state (103 -> 1, 1002 -> 0, 501 -> 5, 301 -> 3); a delivery time and
        the ticket status `delivered` appear only once signed for, at the signing checkpoint's time."""
        com, num = peer.journey([("103", "已揽收"), ("1002", "干线运输"), ("501", "已投柜"), ("301", "本人签收")])
        states = []
        for _ in range(4):
            peer.advance(com, num)
            [record] = peer.connector.read(f"{com}:{num}")
            states.append(record.fields["state"])
            if record.fields["state"] != "3":
                assert "delivered_at" not in record.fields and "ticket_status" not in record.fields
                assert record.fields["ischeck"] == "0"
        assert states == ["1", "0", "5", "3"]
        assert record.fields["ischeck"] == "1" and record.fields["ticket_status"] == "delivered"
        assert record.fields["last_context"] == "本人签收" and record.modified_at.tzinfo is not None
        assert record.fields["delivered_at"] == format_datetime(record.modified_at)  # signed at the newest checkpoint
