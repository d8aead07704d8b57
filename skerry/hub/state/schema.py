"""The hub state's one schema, as numbered migrations both backends run.

Why not SQLAlchemy Core + Alembic: the schema is a dozen small tables whose
SQL is the same on SQLite and PostgreSQL except for three spellings (the
database clock, the byte type, the lock clause), which ``Dialect`` holds. A
migration is a list of SQL statements with those three placeholders; the
runner is ~40 lines (``migrate``): it reads ``schema_version``, refuses a
database newer than ``MIGRATIONS`` with one line, and applies each missing
step in its own transaction under the backend's write lock, so two replicas
starting at once migrate once. Alembic would add two dependencies, an
``env.py``, a revision graph and autogenerate machinery that can neither
spell the database-clock expression nor the fencing lock for us; its upside
(diffing ORM models) needs models we do not have. Rule for new steps: only
ever append to ``MIGRATIONS``; never edit a released step.

Tables (``{now}`` is seconds since the epoch on the database's clock)::

    schema_version(version)                       one row per applied step
    meta(name PK, value)                          release_floor, imported-files marks
    sequences(name PK, value)                     counters whose row lock orders commits (changes, audit)
    writer_lease(name PK, holder, epoch, expires) one row 'writer'; epoch bumps on every acquisition
    release_counters(cluster PK, last)            the last release counter handed out per cluster
    spent_tokens(token_id PK, expires)            redeemed enrollment tokens, until they expire
    revocations(kind, key, at; PK kind,key)       revoked clusters / certificate fingerprints
    reports(cluster PK, generation, body)         newest agent report per cluster
    audit(seq PK, doc)                            audit entries, JSON
    records(kind, key, doc; PK kind,key)          JSON documents: approvals, promotions, history
    changes(seq PK, kind, key, at)                the change log replicas follow
    trust_files(name PK, role, version, data)     TUF metadata as served (``3.snapshot.json``, ``timestamp.json``)
    blobs(digest PK, data)                        bundle bytes by SHA-256 hex: release and director targets
    nonce_counters(cluster PK, last)              the last signed-report nonce counter issued per cluster
    nonces(cluster, nonce, counter, issued; PK cluster,nonce)  open (issued, unspent) nonces, a few per cluster
    attestations(cluster PK, counter, received, data, signature, certificate)  newest signed report per cluster

Records hold, besides approvals and promotions: ``bundle``/<cluster> (its current release, content
digest included: a re-render of unchanged content is no new release) and ``release-signatures``/<role>
(TUF release signatures collected below their threshold).

``release_floor`` is the database clock in milliseconds when the schema was
made: before this schema the hub numbered releases with unix milliseconds, so
every counter it ever gave an agent is below it, and a cluster's first counter
here (``release_floor + 1``) is above all of them whatever the clock does later.
"""

from __future__ import annotations

import dataclasses

from skerry.hub.state.protocol import SchemaTooNew


@dataclasses.dataclass(frozen=True)
class Dialect:
    name: str
    now: str  # SQL expression: seconds since the epoch, database clock, float
    blob: str  # column type for bytes
    lock_update: str  # suffix of a SELECT that locks the row for writing (empty where the whole db is locked)
    lock_share: str  # suffix of a SELECT that keeps the row from being updated until commit


SQLITE = Dialect(
    name="sqlite",
    now="((julianday('now') - 2440587.5) * 86400.0)",
    blob="BLOB",
    lock_update="",
    lock_share="",
)
POSTGRES = Dialect(
    name="postgresql",
    now="(extract(epoch from clock_timestamp())::double precision)",
    blob="BYTEA",
    lock_update=" FOR UPDATE",
    lock_share=" FOR SHARE",
)

MIGRATIONS: tuple[tuple[str, ...], ...] = (
    # 1: the first schema
    (
        "CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)",
        "INSERT INTO meta (name, value) VALUES ('release_floor', CAST(CAST({now} * 1000 AS BIGINT) AS TEXT))",
        "CREATE TABLE sequences (name TEXT PRIMARY KEY, value BIGINT NOT NULL)",
        "INSERT INTO sequences (name, value) VALUES ('changes', 0), ('audit', 0)",
        "CREATE TABLE writer_lease (name TEXT PRIMARY KEY, holder TEXT NOT NULL, epoch BIGINT NOT NULL,"
        " expires DOUBLE PRECISION NOT NULL)",
        "INSERT INTO writer_lease (name, holder, epoch, expires) VALUES ('writer', '', 0, 0)",
        "CREATE TABLE release_counters (cluster TEXT PRIMARY KEY, last BIGINT NOT NULL)",
        "CREATE TABLE spent_tokens (token_id TEXT PRIMARY KEY, expires DOUBLE PRECISION NOT NULL)",
        "CREATE TABLE revocations (kind TEXT NOT NULL, key TEXT NOT NULL, at DOUBLE PRECISION NOT NULL,"
        " PRIMARY KEY (kind, key))",
        "CREATE TABLE reports (cluster TEXT PRIMARY KEY, generation BIGINT NOT NULL, body {blob} NOT NULL)",
        "CREATE TABLE audit (seq BIGINT PRIMARY KEY, doc TEXT NOT NULL)",
        "CREATE TABLE records (kind TEXT NOT NULL, key TEXT NOT NULL, doc TEXT NOT NULL, PRIMARY KEY (kind, key))",
        "CREATE TABLE changes (seq BIGINT PRIMARY KEY, kind TEXT NOT NULL, key TEXT NOT NULL,"
        " at DOUBLE PRECISION NOT NULL)",
    ),
    # 2: the TUF repository's files and blobs (every replica serves them; the writer publishes them)
    (
        "CREATE TABLE trust_files (name TEXT PRIMARY KEY, role TEXT NOT NULL, version BIGINT NOT NULL,"
        " data {blob} NOT NULL)",
        "CREATE INDEX trust_files_role ON trust_files (role, version)",
        "CREATE TABLE blobs (digest TEXT PRIMARY KEY, data {blob} NOT NULL)",
    ),
    # 3: signed agent reports: single-use nonces any replica may issue or spend, the newest report per cluster
    (
        "CREATE TABLE nonce_counters (cluster TEXT PRIMARY KEY, last BIGINT NOT NULL)",
        "CREATE TABLE nonces (cluster TEXT NOT NULL, nonce TEXT NOT NULL, counter BIGINT NOT NULL,"
        " issued DOUBLE PRECISION NOT NULL, PRIMARY KEY (cluster, nonce))",
        "CREATE TABLE attestations (cluster TEXT PRIMARY KEY, counter BIGINT NOT NULL,"
        " received DOUBLE PRECISION NOT NULL, data {blob} NOT NULL, signature {blob} NOT NULL,"
        " certificate {blob} NOT NULL)",
    ),
)
VERSION = len(MIGRATIONS)


def statements(step: tuple[str, ...], dialect: Dialect) -> list[str]:
    return [s.format(now=dialect.now, blob=dialect.blob) for s in step]


def check_version(found: int, url: str) -> None:
    if found > VERSION:
        raise SchemaTooNew(
            f"hub state {url}: schema version {found} is newer than this hub understands ({VERSION}); "
            "run the newer hub, or restore a backup made before the upgrade"
        )
