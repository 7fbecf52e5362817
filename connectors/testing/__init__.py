"""The connector contract suite: what every connector type must do, for the hub to rely on it. Public.

A connector package runs it against its sandbox twin (offline, in its unit tests) and against the real
system (in its peer tests); a behaviour that passes on the real system and fails on the twin means the twin
is wrong. Subclass `ConnectorContract` in a test module and provide the `contract` fixture:

    from connectors.testing import ConnectorContract, ContractPeer

    class TestAgainstMyTwin(ConnectorContract):
        @pytest.fixture
        def contract(self) -> Iterator[ContractPeer]:
            twin = MyTwin()
            yield ContractPeer(CONNECTOR_TYPE, MyConnector("crm", twin.url, "token", twin.client()), "crm",
                               create_fields={"title": "Pump jams"}, change_fields={"title": "Pump fixed"},
                               missing_local_id="no-such-record")

docs/writing-a-connector.md walks through a whole example. The in-tree types add vendor-specific contracts
beside it (`connectors.testing.bottlecrm`, `connectors.testing.tryton`, `connectors.testing.kuaidi100`).
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest

from hub.core.canonical import JsonScalar
from hub.core.errors import InvalidValue
from hub.core.mapping import lookup_path
from hub.core.plugin import ConnectorType
from hub.core.ports import (
    BulkReadUnavailable,
    Connector,
    ConnectorError,
    FieldSchema,
    RecordNotFound,
    SourceRecord,
    WriteRequest,
)

BULK_READ_LIMIT = 10_000  # records a bulk read may yield before the created one must have appeared


@dataclass
class ContractPeer:
    """One system, twin or real, as the contract drives it."""

    connector_type: ConnectorType
    connector: Connector  # acting as the hub would (its credentials)
    system: str  # the system name the connector was built with
    create_fields: Mapping[str, JsonScalar]  # system field -> value: enough to create a record
    change_fields: Mapping[str, JsonScalar]  # system field -> a new value written to that record
    missing_local_id: str  # a local ID the system does not have
    author: str | None = None  # who the connector acts as, if the system reports authors (the hub's echo)
    bad_credentials: Connector | None = None  # the same system with a credential it refuses
    secret: str | None = None  # the connector's credential: no error message may contain it
    readable: bool = True  # False for a type that cannot read records back (push-only systems)
    options: Any = None  # the type's options for this system, as `schema` is asked with them
    # a written field -> the name the system's read answer gives it (Kuaidi100 takes `num`, answers `nu`)
    read_back_as: Mapping[str, str] = field(default_factory=dict)
    # False for a type with no bulk read at all (a courier's parcels only arrive by push): `read_all` must
    # then raise BulkReadUnavailable saying so, which reconciliation reports as "not checked"
    bulk_read: bool = True
    extra: dict[str, Any] = field(default_factory=dict)


def _request(peer: ContractPeer, fields: Mapping[str, JsonScalar], local_id: str | None = None) -> WriteRequest:
    ticket = f"20261204-SVC-{uuid.uuid4().int % 10**5:05d}"
    return WriteRequest(delivery_id=uuid.uuid4().int % 10**9, ticket_id=ticket, system=peer.system,
                        local_id=local_id, fields=dict(fields), attempt=1)


def _the_record(records: list[SourceRecord], local_id: str) -> SourceRecord:
    mine = [r for r in records if r.local_id == local_id]
    assert mine, f"reading {local_id} returned {[r.local_id for r in records]}"
    return mine[0]


def _no_bulk_read(peer: ContractPeer) -> None:
    """A type without a bulk read says so the way reconciliation understands, with a message to act on."""
    with pytest.raises(BulkReadUnavailable) as refused:
        next(iter(peer.connector.read_all()))
    assert str(refused.value).strip()
    if peer.secret:
        assert peer.secret not in str(refused.value)


class ConnectorContract:
    """Every connector type. Subclasses provide the `contract` fixture (a ContractPeer)."""

    def test_the_type_declares_what_the_hub_needs(self, contract: ContractPeer) -> None:
        """Name, builder, notice parser, signature scheme and schema are all there and well-formed."""
        declared = contract.connector_type
        assert isinstance(declared, ConnectorType) and declared.name
        assert callable(declared.build) and callable(declared.parse_notice)
        assert callable(declared.signature.verify) and callable(declared.signature.key)
        schema = declared.schema(contract.options)
        assert all(isinstance(name, str) and isinstance(spec, FieldSchema) for name, spec in schema.items())
        for method in ("write", "create", "read", "read_all", "parse_notice"):
            assert callable(getattr(contract.connector, method)), method

    @pytest.mark.parametrize("payload", [None, [], "text", 7, {"unexpected": True}])
    def test_a_payload_that_is_not_a_notice_is_refused_saying_so(self, contract: ContractPeer, payload: Any) -> None:
        """Intake answers 422 for what the parser refuses: it must raise InvalidValue, nothing else."""
        with pytest.raises(InvalidValue):
            contract.connector_type.parse_notice(contract.system, payload)

    def test_create_makes_a_record_that_reads_back(self, contract: ContractPeer) -> None:
        """A created record has a local ID; read back, it carries the values written, a time and an author."""
        created = contract.connector.create(_request(contract, contract.create_fields))
        assert created.status_code is not None and 200 <= created.status_code < 300, created.error
        assert created.local_id
        if not contract.readable:
            return
        record = _the_record(contract.connector.read(created.local_id), created.local_id)
        assert record.system == contract.system
        assert record.modified_at.tzinfo is not None, "modified-at must be an aware time"
        assert record.author, "an unattributed change has the author `unknown`, never an empty one"
        if contract.author is not None:
            assert record.author == contract.author
        for name, value in contract.create_fields.items():
            assert lookup_path(record.fields, contract.read_back_as.get(name, name)) == (True, value), name

    def test_write_changes_what_reads_back(self, contract: ContractPeer) -> None:
        """Writing to an existing record answers 2xx and the new values read back; nothing is raised."""
        created = contract.connector.create(_request(contract, contract.create_fields))
        assert created.local_id, created.error
        written = contract.connector.write(_request(contract, contract.change_fields, created.local_id))
        assert written.status_code is not None and 200 <= written.status_code < 300, written.error
        if contract.readable:
            record = _the_record(contract.connector.read(created.local_id), created.local_id)
            for name, value in contract.change_fields.items():
                assert lookup_path(record.fields, contract.read_back_as.get(name, name)) == (True, value), name

    def test_a_missing_record_is_not_found(self, contract: ContractPeer) -> None:
        """Reading a local ID the system does not have raises RecordNotFound (the hub reports an orphan)."""
        if not contract.readable:
            with pytest.raises(ConnectorError):
                contract.connector.read(contract.missing_local_id)
            return
        with pytest.raises(RecordNotFound):
            contract.connector.read(contract.missing_local_id)

    def test_a_bulk_read_includes_a_created_record(self, contract: ContractPeer) -> None:
        """`read_all` (reconciliation) streams records and does not miss one just created."""
        if not contract.readable:
            pytest.skip("the type cannot read records back")
        if not contract.bulk_read:
            _no_bulk_read(contract)
            return
        created = contract.connector.create(_request(contract, contract.create_fields))
        assert created.local_id, created.error
        seen = itertools.islice(contract.connector.read_all(), BULK_READ_LIMIT)
        assert any(record.local_id == created.local_id for record in seen)

    def test_a_bulk_read_since_a_moment_includes_what_changed_after_it(self, contract: ContractPeer) -> None:
        """`read_all(since)` (incremental reconciliation) yields a record changed at or after `since`."""
        if not contract.readable:
            pytest.skip("the type cannot read records back")
        if not contract.bulk_read:
            _no_bulk_read(contract)
            return
        created = contract.connector.create(_request(contract, contract.create_fields))
        assert created.local_id, created.error
        record = _the_record(contract.connector.read(created.local_id), created.local_id)
        since = record.modified_at - timedelta(seconds=1)
        seen = list(itertools.islice(contract.connector.read_all(since), BULK_READ_LIMIT))
        assert any(r.local_id == created.local_id for r in seen)
        assert all(r.modified_at >= since for r in seen), "records changed before `since` were returned"

    def test_refused_credentials_are_a_connector_error_that_hides_the_secret(self, contract: ContractPeer) -> None:
        """A credential the system refuses is a ConnectorError (reads) or a failed write, never a crash, and
        its message never contains the credential."""
        if contract.bad_credentials is None:
            pytest.skip("the type has no credential to refuse")
        if contract.readable:
            with pytest.raises(ConnectorError) as refused:
                contract.bad_credentials.read(contract.missing_local_id)
            message = str(refused.value)
        else:
            result = contract.bad_credentials.write(_request(contract, contract.change_fields, "x"))
            assert result.status_code is None or result.status_code >= 400
            message = result.error or ""
        if contract.secret:
            assert contract.secret not in message
