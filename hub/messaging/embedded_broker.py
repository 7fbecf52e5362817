"""The embedded broker: kombu's filesystem transport, made safe for several processes.

kombu 5.7's filesystem transport creates a message file and only then writes it, while a consumer in
another process may already move and read it: it reads an empty file, the JSON error escapes the
consumer loop and the worker exits (celery/kombu#1551). Here a message is written under a name no
consumer looks at and renamed into place, which is atomic on one filesystem, so a consumer only ever
sees whole messages. A consumer claims a message by renaming it into `.claimed/` beside it (atomic too;
the upstream move to the system temp folder is a copy when that is another filesystem).

A consumed message's file is not deleted but renamed into `.spare/`, and the next publish (by any process)
renames a spare into place and writes over it instead of creating a file: on ext4 with many recently
deleted files, creating one spent 0.2-0.6 ms in the kernel looking for a free inode (measured here: a
publish cost 0.6 ms, 0.5 of it in the kernel; rewriting a spare 0.05 ms), and an event publishes five
deliveries. A spare is written over without truncating (that would free and allocate its blocks again):
a shorter message is padded with spaces, which JSON ignores. Consumers keep about SPARE_LIMIT spares at
most and delete the rest.

Each queue has its own folder (`<queue>.queue/`), so a consumer lists only its queue's messages: with
one folder for all queues, every get listed the whole backlog (the worker also polls its empty control
queue), and listing thousands of waiting deliveries cost more than handling a message. A channel keeps
the sorted names of its last listing and lists again only once they are used up, and an empty queue at
most every RELIST_SECONDS. Messages left in the shared folder by an earlier version are moved into
their queue's folder when a channel opens.
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
RELIST_SECONDS = 0.005  # an empty queue is listed again after this long, at the soonest
SPARE_LIMIT = 4096  # about this many spare message files at most
SPARE_RECOUNT = 256  # a consumer counts the spares again after retiring this many files
SPARE_MAX_BYTES = 64 * 1024  # a larger message's file is deleted, not kept as a spare
_SUFFIX = ".msg"


class Channel(filesystem.Channel):  # kombu's own signature: (queue, message)
    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._listed: dict[str, deque[str]] = {}  # queue -> names from its last listing, not yet tried
        self._listed_at: dict[str, float] = {}
        self._made: set[str] = set()
        self._spare_folder = os.path.join(self.data_folder_out, ".spare")
        os.makedirs(self._spare_folder, exist_ok=True)
        self._spares: list[str] = []  # names from the last listing of the spares, not yet tried
        self._spares_listed_at = -RELIST_SECONDS
        self._retired_at_listing = 0
        self._retired = 0
        self._spare_count = 0  # as last counted
        self._adopt_flat_messages()

    def _folder(self, base: str, queue: str) -> str:
        folder = os.path.join(base, queue.replace(os.sep, "%2F") + ".queue")
        if folder not in self._made:
            os.makedirs(os.path.join(folder, ".claimed"), exist_ok=True)
            self._made.add(folder)
        return folder

    def _put(self, queue: str, payload: Any, **kwargs: Any) -> None:  # type: ignore[override]
        folder = self._folder(self.data_folder_out, queue)
        partial = os.path.join(folder, f".partial-{uuid.uuid4()}")
        data = str_to_bytes(dumps(payload))
        if self._take_spare(partial):
            descriptor = os.open(partial, os.O_WRONLY)
            try:
                os.write(descriptor, data + b" " * (os.fstat(descriptor).st_size - len(data)))
            finally:
                os.close(descriptor)
        else:
            with open(partial, "wb") as handle:
                handle.write(data)
        os.replace(partial, os.path.join(folder, f"{int(round(monotonic() * 1000)):015d}_{uuid.uuid4()}{_SUFFIX}"))

    def _take_spare(self, path: str) -> bool:
        """Move a spare message file to `path`; False if there is none. The spares are listed again once
        this channel has retired a file since, or RELIST_SECONDS have passed: with none to find, listing
        them before every publish cost more than it saved."""
        for relisted in (False, True):
            if relisted:
                if self._retired == self._retired_at_listing and monotonic() - self._spares_listed_at < RELIST_SECONDS:
                    return False
                self._spares, self._spares_listed_at = os.listdir(self._spare_folder), monotonic()
                self._retired_at_listing = self._retired
            while self._spares:
                try:
                    os.rename(os.path.join(self._spare_folder, self._spares.pop()), path)
                    return True
                except FileNotFoundError:  # another publisher took it first
                    continue
        return False

    def _retire(self, claimed: str, size: int) -> None:
        """A consumed message's file becomes a spare (see the module's text), unless it is large or there
        are SPARE_LIMIT spares already (counted again every SPARE_RECOUNT files retired here)."""
        self._retired += 1
        if self._retired % SPARE_RECOUNT == 0:
            self._spare_count = len(os.listdir(self._spare_folder))
        if size > SPARE_MAX_BYTES or self._spare_count >= SPARE_LIMIT:
            os.remove(claimed)
        else:
            os.rename(claimed, os.path.join(self._spare_folder, os.path.basename(claimed)))

    def _get(self, queue: str, timeout: Any = None) -> Any:
        folder = self._folder(self.data_folder_in, queue)
        names = self._listed.get(queue)
        if not names:
            now = monotonic()
            if now - self._listed_at.get(queue, -RELIST_SECONDS) < RELIST_SECONDS:
                raise filesystem.Empty()
            self._listed_at[queue] = now
            # names sort oldest first: a millisecond clock leads them
            names = self._listed[queue] = deque(sorted(self._messages(folder)))
        while names:
            name = names.popleft()
            claimed = os.path.join(folder, ".claimed", name)
            try:
                os.rename(os.path.join(folder, name), claimed)
            except FileNotFoundError:  # another consumer took it first
                continue
            with open(claimed, "rb") as handle:
                payload = handle.read()
            self._retire(claimed, len(payload))
            return loads(bytes_to_str(payload))
        raise filesystem.Empty()

    def _size(self, queue: str) -> int:
        return len(self._messages(self._folder(self.data_folder_in, queue)))

    def _purge(self, queue: str) -> int:
        folder, count = self._folder(self.data_folder_in, queue), 0
        self._listed.pop(queue, None)
        for name in self._messages(folder):
            try:
                os.remove(os.path.join(folder, name))
            except FileNotFoundError:  # consumed meanwhile
                continue
            count += 1
        return count

    @staticmethod
    def _messages(folder: str) -> list[str]:
        return [n for n in os.listdir(folder) if n.endswith(_SUFFIX) and not n.startswith(".")]

    def _adopt_flat_messages(self) -> None:
        """Move `<time>_<uuid>.<queue>.msg` files an earlier version left in the shared folder into their
        queue's folder (renames: a message is either still there or moved, never both)."""
        for name in os.listdir(self.data_folder_in):
            stem, _, rest = name.partition(".")
            if not name.endswith(_SUFFIX) or name.startswith(".") or not rest[:-len(_SUFFIX)]:
                continue
            folder = self._folder(self.data_folder_in, rest[:-len(_SUFFIX)])
            try:
                os.rename(os.path.join(self.data_folder_in, name), os.path.join(folder, stem + _SUFFIX))
            except FileNotFoundError:  # taken or moved by another process
                continue


class Transport(filesystem.Transport):
    Channel = Channel


TRANSPORT_ALIASES.setdefault(ALIAS, "hub.messaging.embedded_broker:Transport")
