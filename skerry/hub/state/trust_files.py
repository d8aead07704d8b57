"""The TUF repository's files in the hub state: what every replica serves, what only the writer publishes.

``TrustFiles`` is the trust repository's storage (``skerry.hub.trust.repository``
hands it every metadata file and blob it writes, and reads through it what it
serves). Files are the exact bytes served: metadata by name (``3.snapshot.json``,
``timestamp.json``: table ``trust_files``) and bundle blobs by SHA-256 (``blobs``).

Only the writer writes: a process that does not hold the lease (or serves
only) refuses the first file with ``Fenced``, before anything is half done.
Writes are buffered and committed in one fenced writer transaction when the
repository publishes (it writes the timestamp last: ``published``), or, during
a release (``skerry.hub.writer.Releases.open``), in the release's own
transaction, so counters, bundle records and the metadata naming them commit
together. If that transaction fails (``Fenced``: another process took the
lease; the database is gone), nothing of it is kept: ``abandoned`` drops the
buffer and calls ``on_abandon`` (the repository reloads what the state holds);
once it commits, ``committed`` calls ``on_commit`` (the repository copies the
files to its directory, which thus never holds a version the state lacks).
Each publication logs one change (``trust``/``timestamp.json``) for replicas,
which reload the repository from the state when they see it.

Garbage: the publication that makes a role version or a blob obsolete also
removes it, in the same fenced transaction (``drop_metadata``, ``drop_blobs``:
the repository decides what, by the rules of ``skerry.hub.trust.storage``),
so the tables are bounded by the fleet, not by its history; a new writer
first collects in full (``collect``) what its predecessor's offers to CI left.

TUF release signatures collected below their threshold live in records
(``release-signatures``/<role>): a restart or a new writer keeps them, and any
replica may collect them. A signature stored at the same instant by two replicas for one
role may lose the other's (the later write wins); the signer's next submission restores it.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Callable, Collection, Iterator, MutableMapping
from typing import Any, Protocol

import structlog

from skerry.hub.state.protocol import Fenced, HubState, Tx

log = structlog.get_logger("skerry.hub.state.trust_files")

# Record kind of pending (below-threshold) release signatures, key: the role.
SIGNATURES_RECORD = "release-signatures"
# Change-log entry of one publication (replicas reload the repository when they see it).
CHANGE_KIND, CHANGE_KEY = "trust", "timestamp.json"


class PendingSignatures(MutableMapping):
    """Role -> metadata collecting signatures, read from and written through to the state."""

    def __init__(self, files: TrustFiles, decode: Callable[[bytes], Any], encode: Callable[[Any], bytes]):
        self._files = files
        self._decode = decode
        self._encode = encode

    def __getitem__(self, role: str):
        with self._files.reading() as tx:
            doc = tx.record(SIGNATURES_RECORD, role)
        if doc is None:
            raise KeyError(role)
        return self._decode(json.dumps(doc["metadata"]).encode())

    def __setitem__(self, role: str, md) -> None:
        doc = {"metadata": json.loads(self._encode(md))}
        with self._files.writing() as tx:  # any replica may collect signatures (unfenced)
            tx.put_record(SIGNATURES_RECORD, role, doc)

    def __delitem__(self, role: str) -> None:
        self._files.defer(lambda tx: tx.put_record(SIGNATURES_RECORD, role, None))  # with the publication

    def __iter__(self) -> Iterator[str]:
        with self._files.reading() as tx:
            return iter(list(tx.records(SIGNATURES_RECORD)))

    def __len__(self) -> int:
        with self._files.reading() as tx:
            return len(tx.records(SIGNATURES_RECORD))


class Publisher(Protocol):
    """The writer (``skerry.hub.writer.Writer``): whether this process may publish, and its fenced transaction."""

    @property
    def is_writer(self) -> bool: ...

    def write(self) -> contextlib.AbstractContextManager[Tx]: ...


class TrustFiles:
    """See the module docstring. ``writer`` is None in a process that only serves (``--role serve``)."""

    def __init__(self, state: HubState, writer: Publisher | None = None):
        self.state = state
        self._writer = writer
        self._buffer: list[Callable[[Tx], None]] = []
        self._bound = threading.local()  # .tx: the release transaction this thread writes into
        self.on_abandon: Callable[[], None] | None = None
        self.on_commit: Callable[[], None] | None = None
        self._abandoning = False

    @property
    def _tx(self) -> Tx | None:
        return getattr(self._bound, "tx", None)

    @contextlib.contextmanager
    def reading(self) -> Iterator[Tx]:
        """This thread's release transaction if one is open (a second one would wait for it), else a read."""
        if self._tx is not None:
            yield self._tx
        else:
            with self.state.read() as tx:
                yield tx

    @contextlib.contextmanager
    def writing(self) -> Iterator[Tx]:
        if self._tx is not None:
            yield self._tx
        else:
            with self.state.write() as tx:
                yield tx

    # --- what the repository writes -----------------------------------------------------------

    def defer(self, op: Callable[[Tx], None]) -> None:
        if self._tx is not None:
            op(self._tx)
            return
        if self._writer is None or not self._writer.is_writer:  # refuse before anything is half done
            self.abandoned()
            raise Fenced("this hub is not the writer: it serves the trust repository but does not publish it")
        self._buffer.append(op)

    def put_metadata(self, name: str, role: str, version: int, data: bytes) -> None:
        self.defer(lambda tx: tx.put_trust_file(name, role, version, data))

    def put_blob(self, hexdigest: str, data: bytes) -> None:
        self.defer(lambda tx: tx.put_blob(hexdigest, data))

    def drop_metadata(self, role: str, below: int) -> None:
        """Remove ``role``'s versions below ``below`` with the publication that made them obsolete."""
        self.defer(lambda tx: tx.drop_trust_versions(role, below))

    def drop_blobs(self, digests: Collection[str]) -> None:
        """Remove blobs no kept role version lists, with the publication that stopped listing them."""
        if digests:
            ordered = sorted(digests)
            self.defer(lambda tx: tx.drop_blobs(ordered))

    @property
    def may_publish(self) -> bool:
        """Whether this process writes the files now (the writer, or inside a release's transaction)."""
        return self._tx is not None or (self._writer is not None and self._writer.is_writer)

    def collect(self, keep: Callable[[], Collection[str]]) -> int:
        """The full pass (a new writer's first act): remove each role's versions older than its previous one
        and every blob outside ``keep()``, in one fenced writer transaction; how many rows it removed."""
        if self._writer is None:
            raise Fenced("this hub is not the writer: it does not collect the trust repository's garbage")
        kept = set(keep())
        with self._writer.write() as tx:
            removed = tx.collect_trust_versions()
            after, drop = "", []
            while page := tx.blob_digests(after):
                drop += [d for d in page if d not in kept]
                after = page[-1]
            removed += tx.drop_blobs(drop)
        if removed:
            log.info("trust garbage collected from the hub state", rows=removed)
        return removed

    def published(self) -> None:
        """The repository wrote a timestamp: commit what it wrote (unless a release transaction will)."""
        self.defer(lambda tx: tx.changed(CHANGE_KIND, CHANGE_KEY))
        if self._tx is not None:
            return
        try:
            with self._writer.write() as tx:
                self._drain(tx)
        except BaseException:
            self.abandoned()
            raise
        self.committed()

    def _drain(self, tx: Tx) -> None:
        ops, self._buffer = self._buffer, []
        for op in ops:
            op(tx)

    # --- what the repository reads ------------------------------------------------------------

    def newest(self) -> dict[str, tuple[int, bytes]]:
        with self.reading() as tx:
            return tx.trust_newest()

    def metadata(self, name: str) -> bytes | None:
        with self.reading() as tx:
            return tx.trust_file(name)

    def blob(self, hexdigest: str) -> bytes | None:
        with self.reading() as tx:
            return tx.blob(hexdigest)

    def pending(self, decode: Callable[[bytes], Any], encode: Callable[[Any], bytes]) -> PendingSignatures:
        return PendingSignatures(self, decode, encode)

    # --- joining a release's transaction (``skerry.hub.writer.Journal``) -----------------------

    @contextlib.contextmanager
    def within(self, tx: Tx) -> Iterator[None]:
        self._drain(tx)
        self._bound.tx = tx
        try:
            yield
        finally:
            self._bound.tx = None

    def committed(self) -> None:
        """What was written is in the state: ``on_commit`` (the repository exports its files)."""
        if self.on_commit is None:
            return
        try:
            self.on_commit()
        except OSError as e:  # the state has it; only the directory's copy lags (never read back as newer)
            log.error("cannot export the trust repository's files", error=str(e))

    def abandoned(self) -> None:
        self._buffer.clear()
        if self.on_abandon is None or self._abandoning:  # (a reload that itself fails comes back here)
            return
        self._abandoning = True
        try:
            self.on_abandon()
        except Exception as e:  # noqa: BLE001 - the caller's error is the one to report; this is logged
            log.error("cannot reload the trust repository from the hub state", error=str(e))
        finally:
            self._abandoning = False
