"""The durable store of one ledger node: blocks, the entry index, the replica's persisted
messages and its stable checkpoint, in one SQLite file (WAL mode).

One :class:`LedgerStore` per node and file; one writing process per file (the node), any number
of read-only readers (``ledger status``, an auditor's tool). The store holds bytes in the
canonical encodings of ``blocks.py`` and ``messages.py``, never a private format, so a stored
block is exactly what the network exchanged and what its hash names.

Tables (schema version 2, in ``PRAGMA user_version``; a version-1 file is migrated when the
node opens it for writing):

- ``meta``: ``chain_id``. A file made for another chain is refused at open.
- ``blocks``: ``height`` (0, 1, 2, … with no gaps), ``hash`` (``block_hash(header)``) and
  ``data`` (``encode_block(block)``).
- ``entries``: ``content_hash`` → ``(height, position)``, the first notarization of each hash.
- ``persisted``: the replica's persisted envelopes (``frame(signed)``) in arrival order, with the
  ``seq`` and ``view`` they name, for pruning.
- ``checkpoint``: at most one row, the latest stable checkpoint and its proof.
- ``checkpoint_clients``: the replica's client table at that checkpoint (client → timestamp
  and result of its last executed request), written in the same transaction (version 2).

Durability (the fsync policy):

- ``PRAGMA journal_mode=WAL`` and ``PRAGMA synchronous=FULL``: every commit fsyncs the WAL
  before it returns, so a block that :meth:`LedgerStore.append_block` stored, or a message that
  :meth:`LedgerStore.persist` stored, survives a crash of the process *and* a power loss.
  ``synchronous=NORMAL`` only fsyncs at WAL checkpoints: the last commits can be lost on power
  loss. For blocks that would be repairable (fetch them again), but not for persisted PBFT
  messages: a replica that forgot a prepare or commit it already sent could, after restart,
  sign a different one for the same ``(view, seq)`` — equivocation, which the protocol counts
  as Byzantine. The Ready contract (persist, then send) only holds if persisted means on disk.
- ``PRAGMA fullfsync=ON``: on macOS, where plain ``fsync`` leaves data in the drive's cache,
  syncs use ``F_FULLFSYNC``; a no-op elsewhere.
- WAL checkpoints: SQLite's default ``wal_autocheckpoint`` (1000 pages): the commit that pushes
  the WAL past it copies the WAL back into the database file (fsynced, as ``synchronous=FULL``
  asks) and the WAL restarts from the beginning; closing the last connection checkpoints too.
  A reader holding a read transaction open keeps the WAL from restarting, so readers keep
  their transactions short (every read here is one statement or one short transaction).
- ``PRAGMA busy_timeout`` (:data:`BUSY_TIMEOUT_MS`): a reader or a writer waits that long for
  a lock instead of failing at once (in WAL mode readers and the writer rarely block each
  other; the wait covers WAL recovery and checkpoints).
- Readers open with ``read_only=True`` (``mode=ro``): they can never write, create or migrate.

Invariants:

- Blocks are appended at ``head + 1`` (height 0 first), and each one's ``previous_hash`` equals
  the stored hash of the block below it (:data:`GENESIS_PREVIOUS_HASH` for height 0). The
  caller checks everything else (certificate, transactions, roots) with ``verify_block``
  before appending; the store guards the chain and its own integrity.
- A block, its hash and its entry index rows are written in one transaction: all or nothing.
- ``entries`` maps a content hash to its first ``(height, position)``, later duplicates are
  not indexed: the rule of ``NotarizationState``, so :meth:`LedgerStore.state` (rebuilt from
  the blocks) and :meth:`LedgerStore.locate` (the index) agree.
- Whatever is read back is checked: a stored block whose bytes no longer decode canonically,
  or whose header no longer hashes to the stored hash, raises :class:`StoreError` naming its
  height; nothing corrupted is ever returned.
- The stable checkpoint only moves up.

Pruning the persisted messages (:meth:`LedgerStore.prune_persisted`, run by
:meth:`LedgerStore.save_checkpoint` in the same transaction): once a checkpoint at ``seq`` is
stable the replica has dropped every slot at or below it, so

- a message that names a sequence number (``PrePrepare``, ``Prepare``, ``Commit``,
  ``Checkpoint``, and ``FetchState``/``StateChunk`` were they ever persisted) goes when its
  ``seq <= stable seq``; the checkpoint's own proof lives on in the ``checkpoint`` table;
- ``ViewChange`` and ``NewView`` name a view, not a sequence number: only those of the highest
  view among them are kept. Views only go up, so a restarted replica needs only its latest
  view change and new view to never speak twice, differently, about one view;
- anything else (``Request``, ``Reply``: the replica never persists them) is kept.
"""

from __future__ import annotations

import sqlite3
from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any, cast

from medfabric.crypto.merkle import MerkleTree
from medfabric.ledger.blocks import (
    GENESIS_PREVIOUS_HASH,
    Block,
    BlockHeader,
    EntryProof,
    Location,
    NotarizationState,
    block_entries,
    block_hash,
    decode_block,
    encode_block,
    prove,
)
from medfabric.ledger.messages import (
    Checkpoint,
    Commit,
    FetchState,
    LedgerError,
    Message,
    NewView,
    Prepare,
    PrePrepare,
    Signed,
    StateChunk,
    ViewChange,
    decode_signed,
    frame,
)
from medfabric.ledger.replica import StableCheckpoint

__all__ = ["BUSY_TIMEOUT_MS", "PROOF_CACHE_BLOCKS", "SCHEMA_VERSION", "LedgerStore", "StoreError"]

SCHEMA_VERSION = 2
"""``PRAGMA user_version`` of a ledger store file; another version is refused at open."""

BUSY_TIMEOUT_MS = 5_000
"""How long a connection waits for a lock before :class:`StoreError` (``PRAGMA busy_timeout``)."""

PROOF_CACHE_BLOCKS = 16
"""Blocks whose decoded entries and Merkle tree :meth:`LedgerStore.proof` keeps (LRU)."""

_SQL_INT_MAX = 2**63 - 1  # SQLite integers are signed 64-bit
_PAGE = 64  # blocks per query when iterating
_LENGTH_PREFIX = 4

_V2 = (  # added by schema version 2
    "CREATE TABLE IF NOT EXISTS checkpoint_clients ("
    " client TEXT PRIMARY KEY,"
    " timestamp INTEGER NOT NULL,"
    " result BLOB NOT NULL) STRICT, WITHOUT ROWID",
)
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) STRICT",
    "CREATE TABLE IF NOT EXISTS blocks ("
    " height INTEGER PRIMARY KEY CHECK (height >= 0),"
    " hash BLOB NOT NULL,"
    " data BLOB NOT NULL) STRICT",
    "CREATE TABLE IF NOT EXISTS entries ("
    " content_hash BLOB PRIMARY KEY,"
    " height INTEGER NOT NULL,"
    " position INTEGER NOT NULL) STRICT, WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS persisted ("
    " id INTEGER PRIMARY KEY AUTOINCREMENT,"  # never reused: order survives pruning
    " kind TEXT NOT NULL,"
    " seq INTEGER,"
    " view INTEGER,"
    " data BLOB NOT NULL) STRICT",
    "CREATE INDEX IF NOT EXISTS persisted_seq ON persisted (seq)",
    "CREATE TABLE IF NOT EXISTS checkpoint ("
    " id INTEGER PRIMARY KEY CHECK (id = 1),"
    " seq INTEGER NOT NULL,"
    " state_digest BLOB NOT NULL,"
    " proof BLOB NOT NULL) STRICT",
    *_V2,
)
_VIEW_KINDS = ("ViewChange", "NewView")


class StoreError(LedgerError):
    """The ledger store refused an operation or found its file damaged.

    Attributes:
        height: The height of the block concerned, when there is one (a refused append, a
            corrupted stored block); else None.
    """

    def __init__(self, message: str, *, height: int | None = None) -> None:
        super().__init__(message)
        self.height = height


def _sql_int(value: int, what: str) -> int:
    if not 0 <= value <= _SQL_INT_MAX:
        raise StoreError(f"{what} {value} is outside the store's range 0..2**63-1")
    return value


def _seq_and_view(message: Message) -> tuple[int | None, int | None]:
    if isinstance(message, PrePrepare | Prepare | Commit):
        return message.seq, message.view
    if isinstance(message, Checkpoint | FetchState | StateChunk):
        return message.seq, None
    if isinstance(message, ViewChange):
        return None, message.new_view
    if isinstance(message, NewView):
        return None, message.view
    return None, None


class LedgerStore:
    """Blocks, entry index, persisted replica messages and stable checkpoint of one node.

    Build it with :meth:`open`; use it from one thread. Every method raises
    :class:`StoreError` (wrapping the ``sqlite3`` error) when the database fails, and on a
    store opened read-only every write raises :class:`StoreError`.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as d:
        ...     with LedgerStore.open(Path(d) / "node.db", chain_id="demo") as store:
        ...         store.height() is None
        True
    """

    def __init__(
        self, conn: sqlite3.Connection, path: Path, chain_id: str, *, read_only: bool
    ) -> None:
        """Use :meth:`open`; this only wraps a connection already set up and checked."""
        self._conn: sqlite3.Connection | None = conn
        self.path = path
        self.chain_id = chain_id
        self.read_only = read_only
        # height → (block, Merkle tree of its entry leaves), most recently used last: stored
        # blocks never change, and proofs come in runs over the same blocks (an audit, a
        # batch's records), so each block is decoded and hashed once, not once per proof.
        self._proving: OrderedDict[int, tuple[Block, MerkleTree]] = OrderedDict()

    # --- opening ------------------------------------------------------------------------------

    @classmethod
    def open(cls, path: Path, *, chain_id: str, read_only: bool = False) -> LedgerStore:
        """Open the store at ``path``, creating the file and its schema if needed.

        Args:
            path: The node's SQLite file.
            chain_id: The chain the node serves; a file made for another chain is refused.
            read_only: Open for reading only (``mode=ro``), as a status or audit tool does
                while the node runs; the file must exist and have the schema.

        Returns:
            The open store; close it with :meth:`close` (or use it as a context manager).

        Raises:
            StoreError: The file is not a SQLite database, is a database of something else,
                has another schema version, belongs to another chain, does not exist
                (read-only), or WAL mode cannot be set.
        """
        path = Path(path)
        if not chain_id:
            raise StoreError("chain_id must be non-empty")
        if read_only and not path.is_file():
            raise StoreError(f"no ledger store at {path}")
        try:
            if read_only:
                conn = sqlite3.connect(
                    f"{path.resolve().as_uri()}?mode=ro",
                    uri=True,
                    isolation_level=None,
                    timeout=BUSY_TIMEOUT_MS / 1000,
                )
            else:
                conn = sqlite3.connect(path, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000)
        except sqlite3.Error as e:
            raise StoreError(f"cannot open ledger store {path}: {e}") from e
        try:
            cls._setup(conn, path, chain_id, read_only=read_only)
        except BaseException:
            conn.close()
            raise
        return cls(conn, path, chain_id, read_only=read_only)

    @staticmethod
    def _setup(conn: sqlite3.Connection, path: Path, chain_id: str, *, read_only: bool) -> None:
        try:
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if not read_only:
                # journal_mode is stored in the file; set it before any transaction.
                mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
                if str(mode).lower() != "wal":
                    raise StoreError(f"{path}: cannot use WAL mode (got {mode!r})")
                conn.execute("PRAGMA synchronous = FULL")
                conn.execute("PRAGMA fullfsync = ON")
                if version == 0:
                    LedgerStore._create(conn, path, chain_id)
                    version = conn.execute("PRAGMA user_version").fetchone()[0]
                elif version == 1:
                    LedgerStore._migrate_v1(conn)
                    version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version != SCHEMA_VERSION:
                raise StoreError(
                    f"{path}: not a ledger store of schema version {SCHEMA_VERSION} "
                    f"(user_version is {version})"
                )
            row = conn.execute("SELECT value FROM meta WHERE key = 'chain_id'").fetchone()
        except sqlite3.Error as e:
            raise StoreError(f"cannot open ledger store {path}: {e}") from e
        if row is None:
            raise StoreError(f"{path}: ledger store without a chain id")
        if row[0] != chain_id:
            raise StoreError(f"{path} is the store of chain {row[0]!r}, not of {chain_id!r}")

    @staticmethod
    @contextmanager
    def _schema_change(conn: sqlite3.Connection) -> Iterator[int]:
        """A transaction that changes the schema; yields ``user_version`` read inside it.
        IMMEDIATE: two processes creating or migrating the file at once serialize here."""
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn.execute("PRAGMA user_version").fetchone()[0]
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    @staticmethod
    def _create(conn: sqlite3.Connection, path: Path, chain_id: str) -> None:
        with LedgerStore._schema_change(conn) as version:
            if version == 0:
                tables = conn.execute(
                    "SELECT count(*) FROM sqlite_schema WHERE type = 'table'"
                ).fetchone()[0]
                if tables:
                    raise StoreError(f"{path}: a SQLite database of something else")
                for statement in _SCHEMA:
                    conn.execute(statement)
                conn.execute("INSERT INTO meta VALUES ('chain_id', ?)", (chain_id,))
                conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    @staticmethod
    def _migrate_v1(conn: sqlite3.Connection) -> None:
        """Version 1 → 2: add the client table kept with the stable checkpoint (empty: a
        version-1 checkpoint has no client table, so recovery starts from genesis then)."""
        with LedgerStore._schema_change(conn) as version:
            if version == 1:
                for statement in _V2:
                    conn.execute(statement)
                conn.execute("DELETE FROM checkpoint")  # no client table: not recoverable
                conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def close(self) -> None:
        """Close the store (idempotent). The last connection to close checkpoints the WAL."""
        if self._conn is not None:
            conn, self._conn = self._conn, None
            try:
                conn.close()
            except sqlite3.Error as e:
                raise StoreError(f"closing {self.path}: {e}") from e

    def __enter__(self) -> LedgerStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # --- plumbing -----------------------------------------------------------------------------

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreError(f"ledger store {self.path} is closed")
        return self._conn

    def _query(self, what: str, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        try:
            return self._db().execute(sql, params).fetchall()
        except sqlite3.Error as e:
            raise StoreError(f"{what} in {self.path}: {e}") from e

    @contextmanager
    def _write(self, what: str) -> Iterator[sqlite3.Connection]:
        """One write transaction: committed (and, by ``synchronous=FULL``, fsynced) on exit."""
        if self.read_only:
            raise StoreError(f"{what}: {self.path} is open read-only")
        conn = self._db()
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as e:
            raise StoreError(f"{what} in {self.path}: {e}") from e
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException as e:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            if isinstance(e, sqlite3.Error):
                raise StoreError(f"{what} in {self.path}: {e}") from e
            raise

    @contextmanager
    def _snapshot(self, what: str) -> Iterator[sqlite3.Connection]:
        """One read transaction: every statement in it sees the same state of the file."""
        conn = self._db()
        try:
            conn.execute("BEGIN")
        except sqlite3.Error as e:
            raise StoreError(f"{what} in {self.path}: {e}") from e
        try:
            yield conn
        except sqlite3.Error as e:
            raise StoreError(f"{what} in {self.path}: {e}") from e
        finally:
            if conn.in_transaction:
                conn.execute("COMMIT")

    def _decode_block(self, height: int, stored_hash: bytes, data: bytes) -> Block:
        try:
            block = decode_block(data)
        except LedgerError as e:
            raise StoreError(
                f"stored block at height {height} in {self.path} is corrupt: {e}", height=height
            ) from e
        if block.header.height != height:
            raise StoreError(
                f"stored block at height {height} in {self.path} is corrupt: "
                f"its header says height {block.header.height}",
                height=height,
            )
        if block_hash(block.header) != stored_hash:
            raise StoreError(
                f"stored block at height {height} in {self.path} is corrupt: "
                "its header does not hash to the stored block hash",
                height=height,
            )
        return block

    # --- blocks -------------------------------------------------------------------------------

    def append_block(self, block: Block) -> None:
        """Append ``block`` at ``head + 1`` with its entry index, in one durable transaction.

        The caller has verified the block (``verify_block``); the store checks only that it
        extends the stored chain. Index rows are added for the entries that are the first
        notarization of their content hash (earlier blocks, or earlier in this block, win).

        Args:
            block: The committed block.

        Raises:
            StoreError: The height is not ``head + 1`` (0 for the first block), the previous
                hash is not the stored head's hash (the zero hash at height 0), the block
                cannot be encoded, or the write failed. Nothing is written then.
        """
        header = block.header
        height = _sql_int(header.height, "block height")
        try:
            data = encode_block(block)
        except LedgerError as e:
            raise StoreError(
                f"block at height {height} cannot be encoded: {e}", height=height
            ) from e
        digest = block_hash(header)
        rows = [
            (e.content_hash, height, position) for position, e in enumerate(block_entries(block))
        ]
        with self._write(f"appending block {height}") as conn:
            head = conn.execute(
                "SELECT height, hash FROM blocks ORDER BY height DESC LIMIT 1"
            ).fetchone()
            expected, previous = (
                (0, GENESIS_PREVIOUS_HASH) if head is None else (head[0] + 1, head[1])
            )
            if height != expected:
                raise StoreError(
                    f"block at height {height} does not extend the chain: expected height "
                    f"{expected}",
                    height=height,
                )
            if header.previous_hash != previous:
                below = "the zero hash" if head is None else f"the stored block at height {head[0]}"
                raise StoreError(
                    f"block at height {height} does not chain to {below}: previous hash "
                    f"{header.previous_hash.hex()} != {previous.hex()}",
                    height=height,
                )
            conn.execute("INSERT INTO blocks VALUES (?, ?, ?)", (height, digest, data))
            conn.executemany(
                "INSERT INTO entries VALUES (?, ?, ?) ON CONFLICT (content_hash) DO NOTHING", rows
            )

    def height(self) -> int | None:
        """The height of the last stored block, or None when there is none."""
        top: int | None = self._query("reading the height", "SELECT max(height) FROM blocks")[0][0]
        return top

    def head(self) -> BlockHeader | None:
        """The header of the last stored block, or None when there is none.

        Raises:
            StoreError: The stored head block is corrupt (the error names its height).
        """
        rows = self._query(
            "reading the head", "SELECT height, hash, data FROM blocks ORDER BY height DESC LIMIT 1"
        )
        return self._decode_block(*rows[0]).header if rows else None

    def block(self, height: int) -> Block | None:
        """The block at ``height``, or None when there is none (yet).

        Raises:
            StoreError: The stored block is corrupt (the error names its height).
        """
        if not 0 <= height <= _SQL_INT_MAX:
            return None
        rows = self._query(
            f"reading block {height}",
            "SELECT height, hash, data FROM blocks WHERE height = ?",
            (height,),
        )
        return self._decode_block(*rows[0]) if rows else None

    def blocks(self, start: int = 0, end: int | None = None) -> Iterator[Block]:
        """The stored blocks with ``start <= height < end`` (``end`` None: up to the head), in
        order. Reads a page at a time, so a long chain is never held in memory.

        Raises:
            StoreError: A stored block is corrupt (the error names its height).
        """
        low = max(start, 0)
        high = _SQL_INT_MAX if end is None else min(end, _SQL_INT_MAX + 1)
        while low < high:
            rows = self._query(
                "reading blocks",
                "SELECT height, hash, data FROM blocks WHERE height >= ? AND height < ? "
                "ORDER BY height LIMIT ?",
                (low, high, _PAGE),
            )
            for row in rows:
                yield self._decode_block(*row)
            if len(rows) < _PAGE:
                return
            low = rows[-1][0] + 1

    def locate(self, content_hash: bytes) -> Location | None:
        """Where ``content_hash`` was first notarized, from the index; None if never."""
        rows = self._query(
            "locating an entry",
            "SELECT height, position FROM entries WHERE content_hash = ?",
            (bytes(content_hash),),
        )
        return Location(*rows[0]) if rows else None

    def proof(self, content_hash: bytes) -> EntryProof | None:
        """The :class:`EntryProof` of the first notarization of ``content_hash``, or None.

        Raises:
            StoreError: The block is corrupt, or the index points at an entry that is not there
                or has another content hash.
        """
        where = self.locate(content_hash)
        if where is None:
            return None
        proving = self._proving.get(where.height)
        if proving is None:
            block = self.block(where.height)
            if block is not None:
                proving = (block, MerkleTree(e.leaf_hash for e in block_entries(block)))
                self._proving[where.height] = proving
                while len(self._proving) > PROOF_CACHE_BLOCKS:
                    self._proving.popitem(last=False)
        else:
            self._proving.move_to_end(where.height)
        entries = () if proving is None else block_entries(proving[0])
        if proving is None or not (
            where.position < len(entries) and entries[where.position].content_hash == content_hash
        ):
            raise StoreError(
                f"entry index of {self.path} is corrupt: {content_hash.hex()} is not at "
                f"position {where.position} of block {where.height}",
                height=where.height,
            )
        return prove(proving[0], where.position, tree=proving[1])

    def state(self) -> NotarizationState:
        """The notarization state after all stored blocks, rebuilt by applying them in order.

        Used at restart. Checks as it goes that each block chains to the one below it, that
        the final state root is the head header's ``state_root``, and that the entry index
        holds exactly the notarized hashes.

        Raises:
            StoreError: A stored block is corrupt, a link or the root does not match, or the
                index disagrees with the blocks (the error names the height).
        """
        state = NotarizationState()
        with self._snapshot("rebuilding the state") as conn:
            previous: Block | None = None
            for block in self.blocks():
                h = block.header
                expected = (
                    GENESIS_PREVIOUS_HASH if previous is None else block_hash(previous.header)
                )
                if h.previous_hash != expected:
                    raise StoreError(
                        f"stored block at height {h.height} in {self.path} does not chain to "
                        "the block below it",
                        height=h.height,
                    )
                state.apply(block_entries(block), h.height)
                previous = block
            if previous is None:
                return state
            top = previous.header.height
            if state.state_root() != previous.header.state_root:
                raise StoreError(
                    f"stored blocks of {self.path} up to height {top} do not give the state "
                    "root of its header",
                    height=top,
                )
            indexed = conn.execute("SELECT count(*) FROM entries").fetchone()[0]
            if indexed != len(state):
                raise StoreError(
                    f"entry index of {self.path} holds {indexed} hashes, the blocks up to "
                    f"height {top} notarize {len(state)}",
                    height=top,
                )
        return state

    # --- persisted replica messages -----------------------------------------------------------

    def persist(self, messages: Sequence[Signed[Any]]) -> None:
        """Append ``messages`` (a ``Ready.persist``) in order, durably, in one transaction.

        Returns only once they are on disk: the caller may then send (the Ready contract).

        Raises:
            StoreError: An envelope is for another chain or cannot be encoded, a sequence
                number or view is beyond 2**63-1, or the write failed. Nothing is written then.
        """
        if not messages:
            return
        rows: list[tuple[str, int | None, int | None, bytes]] = []
        for signed in messages:
            if signed.chain_id != self.chain_id:
                raise StoreError(
                    f"cannot persist a message of chain {signed.chain_id!r} in the store of "
                    f"{self.chain_id!r}"
                )
            seq, view = _seq_and_view(signed.message)
            try:
                data = frame(signed)
            except LedgerError as e:
                raise StoreError(f"cannot persist an unencodable message: {e}") from e
            rows.append(
                (
                    type(signed.message).__name__,
                    None if seq is None else _sql_int(seq, "seq"),
                    None if view is None else _sql_int(view, "view"),
                    data,
                )
            )
        with self._write("persisting messages") as conn:
            conn.executemany(
                "INSERT INTO persisted (kind, seq, view, data) VALUES (?, ?, ?, ?)", rows
            )

    def persisted(self) -> list[Signed[Message]]:
        """The persisted messages still kept, decoded, in the order they were persisted.

        Raises:
            StoreError: A stored message no longer decodes (the error names its row id).
        """
        rows = self._query(
            "reading persisted messages", "SELECT id, data FROM persisted ORDER BY id"
        )
        out: list[Signed[Message]] = []
        for row_id, data in rows:
            try:
                out.append(decode_signed(data))
            except LedgerError as e:
                raise StoreError(
                    f"persisted message {row_id} in {self.path} is corrupt: {e}"
                ) from e
        return out

    def prune_persisted(self, stable_seq: int) -> int:
        """Drop the persisted messages a stable checkpoint at ``stable_seq`` makes obsolete.

        The rule (module docstring): messages with a ``seq <= stable_seq`` go; of the
        ``ViewChange`` and ``NewView`` messages only those of the highest view stay; other
        messages stay.

        Returns:
            How many messages were dropped.

        Raises:
            StoreError: The write failed, or the store is read-only.
        """
        with self._write("pruning persisted messages") as conn:
            return self._prune(conn, _sql_int(stable_seq, "stable checkpoint seq"))

    @staticmethod
    def _prune(conn: sqlite3.Connection, stable_seq: int) -> int:
        dropped = conn.execute("DELETE FROM persisted WHERE seq <= ?", (stable_seq,)).rowcount
        dropped += conn.execute(
            "DELETE FROM persisted WHERE kind IN (?, ?) AND view < "
            "(SELECT max(view) FROM persisted WHERE kind IN (?, ?))",
            (*_VIEW_KINDS, *_VIEW_KINDS),
        ).rowcount
        return int(dropped)

    # --- stable checkpoint --------------------------------------------------------------------

    def save_checkpoint(
        self,
        checkpoint: StableCheckpoint,
        clients: Mapping[str, tuple[int, bytes]] | None = None,
    ) -> None:
        """Keep ``checkpoint`` (a ``Ready.stable_checkpoint`` or ``Ready.restored``) as the
        latest stable checkpoint and, in the same transaction, :meth:`prune_persisted` to it.

        ``clients`` is the replica's client table at the checkpoint (client → timestamp and
        result of its last executed request, from ``decode_state``); it replaces the stored
        table when given (:meth:`checkpoint_clients`). Restart recovery needs it: the service
        state comes back from the blocks, the client table only from here.

        Saving the checkpoint already kept is a no-op write (the prune still runs).

        Raises:
            StoreError: It is below the stored checkpoint, or at the same ``seq`` with another
                state digest (two stable states for one ``seq`` mean the chain forked), or a
                proof envelope cannot be encoded, or the write failed.
        """
        seq = _sql_int(checkpoint.seq, "checkpoint seq")
        try:
            proof = b"".join(
                len(f).to_bytes(_LENGTH_PREFIX, "big") + f
                for f in (frame(s) for s in checkpoint.proof)
            )
        except LedgerError as e:
            raise StoreError(f"checkpoint {seq}: cannot encode its proof: {e}") from e
        with self._write(f"saving checkpoint {seq}") as conn:
            row = conn.execute("SELECT seq, state_digest FROM checkpoint WHERE id = 1").fetchone()
            if row is not None:
                if seq < row[0]:
                    raise StoreError(
                        f"checkpoint {seq} is below the stored stable checkpoint {row[0]}"
                    )
                if seq == row[0] and checkpoint.state_digest != row[1]:
                    raise StoreError(
                        f"checkpoint {seq} has another state digest than the stored one at the "
                        "same seq"
                    )
            conn.execute(
                "INSERT INTO checkpoint VALUES (1, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET "
                "seq = excluded.seq, state_digest = excluded.state_digest, proof = excluded.proof",
                (seq, bytes(checkpoint.state_digest), proof),
            )
            if clients is not None:
                conn.execute("DELETE FROM checkpoint_clients")
                conn.executemany(
                    "INSERT INTO checkpoint_clients VALUES (?, ?, ?)",
                    [
                        (c, _sql_int(ts, "client timestamp"), bytes(r))
                        for c, (ts, r) in sorted(clients.items())
                    ],
                )
            self._prune(conn, seq)

    def checkpoint_clients(self) -> dict[str, tuple[int, bytes]]:
        """The client table saved with the stable checkpoint (client → last executed request's
        timestamp and result); empty when none was saved."""
        rows = self._query(
            "reading the checkpoint's client table",
            "SELECT client, timestamp, result FROM checkpoint_clients ORDER BY client",
        )
        return {c: (ts, bytes(r)) for c, ts, r in rows}

    def locations(self, max_height: int) -> dict[bytes, Location]:
        """The first notarization of every content hash at ``height <= max_height``, from the
        entry index (the notarization state after block ``max_height``)."""
        rows = self._query(
            "reading the entry index",
            "SELECT content_hash, height, position FROM entries WHERE height <= ?",
            (max(min(max_height, _SQL_INT_MAX), -1),),
        )
        return {bytes(h): Location(height, position) for h, height, position in rows}

    def checkpoint(self) -> StableCheckpoint | None:
        """The latest stable checkpoint saved, or None.

        Raises:
            StoreError: Its stored proof is corrupt (does not decode, or is not made of
                checkpoint votes for its ``seq`` and state digest).
        """
        rows = self._query(
            "reading the checkpoint", "SELECT seq, state_digest, proof FROM checkpoint WHERE id = 1"
        )
        if not rows:
            return None
        seq, digest, blob = rows[0]
        proof: list[Signed[Checkpoint]] = []
        at = 0
        try:
            while at < len(blob):
                size = int.from_bytes(blob[at : at + _LENGTH_PREFIX], "big")
                data = blob[at + _LENGTH_PREFIX : at + _LENGTH_PREFIX + size]
                if len(data) != size:
                    raise StoreError("truncated")
                signed = decode_signed(data)
                m = signed.message
                if not (isinstance(m, Checkpoint) and (m.seq, m.state_digest) == (seq, digest)):
                    raise StoreError("a proof envelope is not a vote for this checkpoint")
                proof.append(cast("Signed[Checkpoint]", signed))
                at += _LENGTH_PREFIX + size
        except LedgerError as e:
            raise StoreError(f"stored checkpoint {seq} in {self.path} is corrupt: {e}") from e
        return StableCheckpoint(seq, digest, tuple(proof))
