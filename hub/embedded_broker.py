"""The embedded broker: kombu's filesystem transport, made safe for several processes.

kombu 5.7's filesystem transport creates a message file and only then writes it, while a consumer in
another process may already move and read it: it reads an empty file, the JSON error escapes the
consumer loop and the worker exits (celery/kombu#1551). Here a message is written under a name no
consumer looks at and renamed into place, which is atomic on one filesystem, so a consumer only ever
sees whole messages. A consumer claims a message by renaming it into `.claimed/` in the same folder
(atomic too; the upstream move to the system temp folder is a copy when that is another filesystem),
and it sorts only its own queue's files, not the whole folder.
"""

from __future__ import annotations

import os
import uuid
from time import monotonic
from typing import Any

from kombu.transport import TRANSPORT_ALIASES, filesystem
from kombu.utils.encoding import bytes_to_str, str_to_bytes
from kombu.utils.json import dumps, loads

ALIAS = "tickethub-fs"


class Channel(filesystem.Channel):  # kombu's own signature: (queue, message)
    def _put(self, queue: str, payload: Any, **kwargs: Any) -> None:  # type: ignore[override]
        name = f"{int(round(monotonic() * 1000)):015d}_{uuid.uuid4()}.{queue}.msg"
        partial = os.path.join(self.data_folder_out, f".partial-{uuid.uuid4()}")
        with open(partial, "wb") as handle:
            handle.write(str_to_bytes(dumps(payload)))
        os.replace(partial, os.path.join(self.data_folder_out, name))

    def _get(self, queue: str, timeout: Any = None) -> Any:
        wanted = f"{queue}.msg"
        names = sorted(n for n in os.listdir(self.data_folder_in) if n.partition(".")[2] == wanted)
        claimed_dir = os.path.join(self.data_folder_in, ".claimed")
        os.makedirs(claimed_dir, exist_ok=True)
        for name in names:
            claimed = os.path.join(claimed_dir, name)
            try:
                os.rename(os.path.join(self.data_folder_in, name), claimed)
            except FileNotFoundError:  # another consumer took it first
                continue
            with open(claimed, "rb") as handle:
                payload = handle.read()
            os.remove(claimed)
            return loads(bytes_to_str(payload))
        raise filesystem.Empty()


class Transport(filesystem.Transport):
    Channel = Channel


TRANSPORT_ALIASES.setdefault(ALIAS, "hub.embedded_broker:Transport")
