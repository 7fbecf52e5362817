"""The `kuaidi100` connector type, as registered under the `tickethub.connectors` entry point group: a courier
tracked through Kuaidi100 (快递100). The hub subscribes parcels by writing `num`/`com`; Kuaidi100 pushes each
parcel's whole track as a signed form post to `/webhooks/<system>` and expects its own acknowledgement back.

Its own keys in [systems.<name>]: `customer_env` (the variable holding Kuaidi100's `customer` id) and
`callback_url` (where Kuaidi100 pushes: the hub's public `/webhooks/<name>`). It also needs `base_url`
(https://poll.kuaidi100.com), `credentials_env` (the variable holding the authorisation key) and
`webhook_secrets_env` (the salts: the first is sent when subscribing, every active one verifies a push).

    [systems.courier]
    type = "kuaidi100"
    base_url = "https://poll.kuaidi100.com"
    credentials_env = "TICKETHUB_KUAIDI100_KEY"
    customer_env = "TICKETHUB_KUAIDI100_CUSTOMER"
    webhook_secrets_env = "TICKETHUB_KUAIDI100_SALTS"
    callback_url = "https://hub.example.com/webhooks/courier"
"""

from __future__ import annotations

import os
import re

from pydantic import field_validator

from connectors.kuaidi100.connector import Kuaidi100Connector
from connectors.kuaidi100.notice import parse_notices
from connectors.kuaidi100.push import KUAIDI100_INBOUND, KUAIDI100_SCHEME
from hub.core.errors import UnknownSystem
from hub.core.plugin import ConnectorType, SystemSetup
from hub.core.ports import Connector
from hub.core.strict import StrictModel

_VARIABLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class Kuaidi100Options(StrictModel):
    customer_env: str  # the environment variable holding Kuaidi100's `customer` id (never the id itself)
    callback_url: str  # where Kuaidi100 pushes: the hub's public /webhooks/<system>

    @field_validator("customer_env")
    @classmethod
    def _variable(cls, value: str) -> str:
        if not _VARIABLE.match(value):
            # the value is not repeated: someone may have put the customer id itself here
            raise ValueError("customer_env is not an environment variable name (letters, digits, _): give the "
                             "variable's name, e.g. TICKETHUB_KUAIDI100_CUSTOMER, and put the customer id in it")
        return value

    @field_validator("callback_url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not value.startswith(("https://", "http://")) or any(c.isspace() for c in value):
            raise ValueError("callback_url must be the hub's public http(s) URL of /webhooks/<system>")
        return value


def build(setup: SystemSetup) -> Connector:
    name = setup.system
    options: Kuaidi100Options | None = setup.options
    if options is None:
        raise UnknownSystem(f"system `{name}` (kuaidi100) needs customer_env and callback_url in [systems.{name}]")
    if not setup.credential:
        raise UnknownSystem(f"system `{name}` (kuaidi100) needs its Kuaidi100 authorisation key: set "
                            f"credentials_env in [systems.{name}] and that variable")
    customer = os.environ.get(options.customer_env, "").strip()
    if not customer:
        raise UnknownSystem(f"system `{name}` (kuaidi100) needs its Kuaidi100 customer id: set the variable "
                            f"${options.customer_env} that customer_env in [systems.{name}] names")
    if not setup.webhook_secrets:
        raise UnknownSystem(f"system `{name}` (kuaidi100) needs a salt for Kuaidi100 to sign its pushes with: set "
                            f"webhook_secrets_env in [systems.{name}] and put the salt in that variable")
    return Kuaidi100Connector(name, setup.base_url, setup.credential, customer, setup.webhook_secrets[0],
                              options.callback_url, setup.client, customer_env=options.customer_env)


CONNECTOR_TYPE = ConnectorType(name="kuaidi100", build=build, parse_notice=parse_notices, options=Kuaidi100Options,
                               requires=("base_url", "credentials_env", "webhook_secrets_env"),
                               signature=KUAIDI100_SCHEME, schema=lambda _options: Kuaidi100Connector.SCHEMA,
                               notices_carry_records=True, inbound=KUAIDI100_INBOUND)
