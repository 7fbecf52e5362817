"""The embedded broker: kombu's filesystem transport, made safe for several processes.

kombu 5.7's filesystem transport creates a message file and only then writes it, while a consumer in
another process may already move and read it: it reads an empty file, the JSON error escapes the
consumer loop and the worker exits (celery/kombu#1551). Here a message is written under a name no
consumer looks at and renamed into place, which is atomic on one filesystem, so a consumer only ever
sees whole messages. A consumer claims a message by renaming it into `.claimed/` in the same folder
(atomic too; the upstream move to the system temp folder is a copy when that is another filesystem),
and it sorts only its own queue's files, not the whole folder. A channel keeps the sorted names of its
last listing for every queue, and lists the folder again only when the queue asked for has none left,
and then at most every RELIST_SECONDS: listing a folder holding a backlog of thousands of messages on
every get (the worker also polls its empty control queue) cost more than the message.
"""

from __future__ import annotations

import os
import uuid
from collections import deque
from time import monotonic
from typing import Any

from kombu.transport import TRANSPORT_ALIASES, filesystem
from kombu.utils.encoding import bytes_to_str, str_to_bytes
from kombu.utils.json import dumps, loads

ALIAS = "tickethub-fs"
RELIST_SECONDS = 0.005  # a queue found empty is looked for again after this long, at the soonest


class Channel(filesystem.Channel):  # kombu's own signature: (queue, message)
    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._listed: dict[str, deque[str]] = {}  # queue -> names from the last listing, not yet tried
        self._unsorted: dict[str, list[str]] = {}  # queue -> names from the last listing, not yet sorted
        self._listed_at = -RELIST_SECONDS
        self._claimed_dir = os.path.join(self.data_folder_in, ".claimed")
        os.makedirs(self._claimed_dir, exist_ok=True)

    def _put(self, queue: str, payload: Any, **kwargs: Any) -> None:  # type: ignore[override]
        name = f"{int(round(monotonic() * 1000)):015d}_{uuid.uuid4()}.{queue}.msg"
        partial = os.path.join(self.data_folder_out, f".partial-{uuid.uuid4()}")
        with open(partial, "wb") as handle:
            handle.write(str_to_bytes(dumps(payload)))
        os.replace(partial, os.path.join(self.data_folder_out, name))

    def _get(self, queue: str, timeout: Any = None) -> Any:
        names = self._listed.get(queue)
        if not names:
            if queue not in self._unsorted and monotonic() - self._listed_at >= RELIST_SECONDS:
                self._relist()
            names = self._listed[queue] = deque(sorted(self._unsorted.pop(queue, ())))
        while names:
            name = names.popleft()
            claimed = os.path.join(self._claimed_dir, name)
            try:
                os.rename(os.path.join(self.data_folder_in, name), claimed)
            except FileNotFoundError:  # another consumer took it first
                continue
            with open(claimed, "rb") as handle:
                payload = handle.read()
            os.remove(claimed)
            return loads(bytes_to_str(payload))
        raise filesystem.Empty()

    def _relist(self) -> None:
        """List the folder once for every queue; each queue's names are sorted (oldest first: a millisecond
        clock leads them) when that queue is next asked for."""
        self._listed_at = monotonic()
        self._unsorted = {}
        for name in os.listdir(self.data_folder_in):
            kind = name.partition(".")[2]
            if kind.endswith(".msg"):
                self._unsorted.setdefault(kind[:-4], []).append(name)


class Transport(filesystem.Transport):
    Channel = Channel


TRANSPORT_ALIASES.setdefault(ALIAS, "hub.embedded_broker:Transport")
