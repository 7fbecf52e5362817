"""What a connector type declares to the hub: the object a connector package registers under the Python
entry point group `tickethub.connectors` (see docs/writing-a-connector.md).

    [project.entry-points."tickethub.connectors"]
    mytype = "my_package.plugin:CONNECTOR_TYPE"

The hub knows connector types only through these declarations: it validates a system's own keys with
`options`, checks that the keys the type `requires` are set, verifies inbound webhooks with `signature`,
checks and parses their payloads with `parse_notice` at intake, asks `schema` what the system accepts (to
refuse a value before it is sent), builds the connector with `build`, and polls the system when `polled`.
A vendor whose webhooks are not a signed JSON body (e.g. a signed form post) declares `inbound`: how its body
becomes the payload, and the answer its vendor expects.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from hub.core.errors import TickethubError
from hub.core.ports import Connector, FieldSchema, Notice
from hub.core.signing import STANDARD_WEBHOOKS, SignatureScheme

ENTRY_POINT_GROUP = "tickethub.connectors"


class UnsupportedBody(TickethubError):
    """A webhook body of a kind the type does not take (its media type or charset): intake answers 415."""


@dataclass(frozen=True)
class InboundFormat:
    """A vendor's webhook that is not a JSON body (e.g. a signed form post), and the answer it expects.

    Intake still checks the signature first (the type's `signature.verify` gets the headers and the raw
    body, so it parses the body itself); then `decode` replaces the Content-Type and JSON checks, and every
    answer, accepted or refused, goes through `reply`, since a vendor that does not get the acknowledgement
    it expects keeps sending."""

    # (lower-cased headers, raw body) -> the JSON-able payload stored in the inbox and given to parse_notice.
    # Raises InvalidValue (intake answers 422) or UnsupportedBody (415) saying what is wrong.
    decode: Callable[[Mapping[str, str], bytes], Any]
    # (status the hub decided: 202 or a refusal, event id or None, duplicate, reason) -> (HTTP status, JSON body)
    reply: Callable[[int, str | None, bool, str], tuple[int, Mapping[str, Any]]]


@dataclass(frozen=True)
class SystemSetup:
    """What `ConnectorType.build` is given for one configured system."""

    system: str  # the system's name in tickethub.toml
    base_url: str
    options: Any  # the type's own keys from [systems.<name>], validated by its `options` model (None without one)
    hub_author: str | None  # the user the hub writes as there: its changes are the hub's own echoes
    credential: str | None  # the secret the system's `credentials_env` names (token, password)
    webhook_secrets: Sequence[str]  # the active webhook secrets; the first signs outbound writes
    client: Any  # an httpx.Client with this system's own connection pool (the core imports no HTTP library)


def _no_schema(_options: Any) -> Mapping[str, FieldSchema]:
    return {}


@dataclass(frozen=True)
class ConnectorType:
    name: str
    # builds the connector; raises hub.core.errors.UnknownSystem naming the key to set if it cannot
    build: Callable[[SystemSetup], Connector]
    # (system, payload) -> notices; pure. Raises InvalidValue saying what is wrong (intake answers 422).
    parse_notice: Callable[[str, Any], list[Notice]]
    options: type | None = None  # a pydantic model (extra="forbid") of the type's own keys
    requires: tuple[str, ...] = ()  # common keys it needs: base_url, credentials_env, hub_author, ...
    signature: SignatureScheme = STANDARD_WEBHOOKS  # how its inbound webhooks are signed
    schema: Callable[[Any], Mapping[str, FieldSchema]] = _no_schema  # (options) -> what the system accepts
    notices_carry_records: bool = False  # True: a notice holds the whole record, nothing is read back
    polled: bool = False  # the system sends no webhooks: beat polls it (its connector has `poll`)
    inbound: InboundFormat | None = None  # webhooks that are not signed JSON, and the vendor's expected answer

    def validate_options(self, raw: Mapping[str, Any]) -> Any:
        """The type's own keys, validated (pydantic's ValidationError if they are wrong)."""
        if self.options is None:
            if raw:
                raise ValueError(f"connector type `{self.name}` takes no keys of its own; "
                                 f"remove {', '.join(sorted(raw))}")
            return None
        return self.options.model_validate(dict(raw))  # type: ignore[attr-defined]
