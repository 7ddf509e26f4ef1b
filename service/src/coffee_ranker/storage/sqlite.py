"""The SQLite backend: the default, for a single host with nothing else to set up.

One connection per thread (FastAPI runs storage calls in a thread pool), the database in WAL mode so
readers never wait for the writer, foreign keys on, and writes in ``BEGIN IMMEDIATE`` transactions so
concurrent writers queue on the busy timeout instead of failing.

Each shop's ``review_count`` and ``star_sum`` are kept by triggers on ``reviews`` inside the same
transaction as the review, so they cannot drift from the reviews whatever code path writes them.

Only SQL that SQLite 3.22 (Ubuntu 18.04) understands: no UPSERT, no RETURNING.
"""

import os
import sqlite3
import threading
import uuid
from contextlib import contextmanager
from datetime import datetime
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

from coffee_ranker.domain import ranking
from coffee_ranker.domain.errors import SchemaTooNew, ShopNotFound, StorageUnavailable
from coffee_ranker.domain.models import NewShop, Page, Photo, Review, ReviewWrite, Shop, timestamp, utc_now
from coffee_ranker.domain.ports import Repository
from coffee_ranker.metrics import dependency_call
from coffee_ranker.storage import cursors
from coffee_ranker.storage.cursors import CursorCodec

# Integers, so a cursor's "comes after" test is exact (see domain.ranking).
_P = ranking.PRIOR_STAR_TOTAL
_C = ranking.PRIOR_WEIGHT
_SHOP_COLUMNS = "id, name, address, latitude, longitude, review_count, star_sum, created_at"
# The score as SQLite computes it for the index. Division is correctly rounded, so equal scores are
# equal doubles, and distinct scores of real shops (counts far below 2**26) never round together:
# this order is the exact one of domain.ranking.
_SCORE = f"(({_P} + star_sum) * 1.0 / ({_C} + review_count))"
_RANKED_ORDER = f"ORDER BY {_SCORE} DESC, review_count DESC, id ASC"
# Rows listed after the cursor's shop: lower score, or equal score and fewer reviews, or equal both
# and a greater id. Scores compared as cross-multiplied integers; the first term only lets the
# index skip the shops ranked above the cursor.
_AFTER_RANK_KEY = f"""
    {_SCORE} <= :score AND (
    ({_P} + star_sum) * ({_C} + :n) < ({_P} + :s) * ({_C} + review_count)
    OR (({_P} + star_sum) * ({_C} + :n) = ({_P} + :s) * ({_C} + review_count)
        AND (review_count < :n OR (review_count = :n AND id > :id))))
"""

#: Schema migrations, applied in order on start; ``PRAGMA user_version`` records the last one applied.
#: Append new migrations; never edit one that has shipped.
MIGRATIONS: Sequence[Tuple[int, Sequence[str]]] = (
    (
        1,
        (
            """
            CREATE TABLE shops (
                id           TEXT PRIMARY KEY,
                name         TEXT NOT NULL,
                address      TEXT NOT NULL,
                latitude     REAL,
                longitude    REAL,
                review_count INTEGER NOT NULL DEFAULT 0 CHECK (review_count >= 0),
                star_sum     INTEGER NOT NULL DEFAULT 0 CHECK (star_sum >= 0),
                created_at   TEXT NOT NULL
            )
            """,
            """
            CREATE TABLE reviews (
                shop_id    TEXT NOT NULL REFERENCES shops (id) ON DELETE CASCADE,
                user_id    TEXT NOT NULL,
                stars      INTEGER NOT NULL CHECK (stars BETWEEN 1 AND 5),
                text       TEXT,
                created_at TEXT NOT NULL,
                updated_at TEXT NOT NULL,
                PRIMARY KEY (shop_id, user_id)
            ) WITHOUT ROWID
            """,
            """
            CREATE TRIGGER reviews_count_new AFTER INSERT ON reviews BEGIN
                UPDATE shops SET review_count = review_count + 1, star_sum = star_sum + NEW.stars
                WHERE id = NEW.shop_id;
            END
            """,
            """
            CREATE TRIGGER reviews_count_replaced AFTER UPDATE OF stars ON reviews BEGIN
                UPDATE shops SET star_sum = star_sum - OLD.stars + NEW.stars WHERE id = NEW.shop_id;
            END
            """,
            """
            CREATE TRIGGER reviews_count_removed AFTER DELETE ON reviews BEGIN
                UPDATE shops SET review_count = review_count - 1, star_sum = star_sum - OLD.stars
                WHERE id = OLD.shop_id;
            END
            """,
            """
            CREATE TABLE photos (
                id           TEXT PRIMARY KEY,
                shop_id      TEXT NOT NULL REFERENCES shops (id) ON DELETE CASCADE,
                key          TEXT NOT NULL UNIQUE,
                content_type TEXT NOT NULL,
                size         INTEGER NOT NULL CHECK (size > 0),
                created_at   TEXT NOT NULL
            )
            """,
            "CREATE INDEX photos_by_shop ON photos (shop_id, created_at, id)",
        ),
    ),
    (
        2,
        (
            # The ranked listing walks this index instead of sorting every shop per request.
            f"CREATE INDEX shops_by_rank ON shops ({_SCORE} DESC, review_count DESC, id ASC)",
            # Readiness writes here: a database that cannot be written is not ready.
            "CREATE TABLE readiness (id INTEGER PRIMARY KEY CHECK (id = 1), checked_at TEXT NOT NULL)",
        ),
    ),
)

SCHEMA_VERSION = MIGRATIONS[-1][0]

_BUSY_TIMEOUT_SECONDS = 15
#: Below this much free space readiness fails, before writes start failing with "disk full".
MIN_FREE_DISK_BYTES = 16 * 1024 * 1024


#: Each call of the datastore is timed, and counted when it fails (metrics.py).
_measured = dependency_call("sqlite")


class SqliteRepository(Repository):
    local_reads = True

    def __init__(self, path: str, cursors: Optional[CursorCodec] = None) -> None:
        self.path = path
        self._cursors = cursors if cursors is not None else CursorCodec()
        self._local = threading.local()
        self._connections: List[sqlite3.Connection] = []
        self._connections_lock = threading.Lock()
        self._opened = False
        self._commits = 0

    # -- connections and schema ---------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        # isolation_level=None: transactions are explicit (BEGIN IMMEDIATE below), never implicit.
        connection = sqlite3.connect(
            self.path, timeout=_BUSY_TIMEOUT_SECONDS, isolation_level=None, check_same_thread=False
        )
        connection.row_factory = sqlite3.Row
        connection.execute("PRAGMA foreign_keys = ON")
        # WAL with synchronous=NORMAL survives a crash of the service; only a power cut can lose
        # the last transactions, never corrupt the file.
        connection.execute("PRAGMA synchronous = NORMAL")
        with self._connections_lock:
            self._connections.append(connection)
        return connection

    @property
    def _db(self) -> sqlite3.Connection:
        connection = getattr(self._local, "connection", None)
        if connection is None:
            connection = self._local.connection = self._connect()
        return connection

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        try:
            db.execute("COMMIT")
        finally:
            with self._connections_lock:  # counted even if COMMIT failed: a change too many is harmless
                self._commits += 1

    @_measured  # a query on every cached read: the read cache's check is a call to SQLite too
    def change_token(self) -> Tuple[int, int]:
        # data_version changes when another connection (or process) commits, not this one; the
        # counter covers this process's own commits on any of its connections.
        return self._commits, self._db.execute("PRAGMA data_version").fetchone()[0]

    def open(self) -> None:
        if self._opened:
            return
        db = self._db
        mode = db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if mode.lower() != "wal":
            raise StorageUnavailable(f"SQLite at {self.path} refused WAL mode (got {mode})")
        self.migrate()
        self._opened = True

    def migrate(self) -> int:
        """Apply pending migrations, each in its own transaction; return the schema version."""
        with self._write() as db:
            current = db.execute("PRAGMA user_version").fetchone()[0]
            if current > SCHEMA_VERSION:
                raise SchemaTooNew(
                    f"the database {self.path} has schema version {current}, newer than this "
                    f"release knows ({SCHEMA_VERSION}); run a newer coffee-ranker-api"
                )
            for version, statements in MIGRATIONS:
                if version <= current:
                    continue
                for statement in statements:
                    db.execute(statement)
                # PRAGMA takes no parameters; version is an int from the list above.
                db.execute(f"PRAGMA user_version = {int(version)}")
                current = version
        return current

    def close(self) -> None:
        with self._connections_lock:
            connections, self._connections = self._connections, []
        for connection in connections:
            connection.close()
        self._local = threading.local()
        self._opened = False

    @_measured
    def ping(self) -> None:
        """Raise StorageUnavailable unless the database can be read and written (a committed write,
        so a read-only file or a full disk fails here rather than on a customer's review)."""
        try:
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            if version == SCHEMA_VERSION:
                with self._write() as db:
                    db.execute("DELETE FROM readiness")
                    db.execute(
                        "INSERT INTO readiness (id, checked_at) VALUES (1, ?)", (timestamp(utc_now()),)
                    )
        except sqlite3.Error as error:
            raise StorageUnavailable(f"SQLite at {self.path} cannot be written: {error}") from error
        if version != SCHEMA_VERSION:
            raise StorageUnavailable(f"SQLite at {self.path} has schema version {version}")
        # The probe above may fit in pages SQLite already has; a nearly full disk fails the next write.
        disk = os.statvfs(os.path.dirname(os.path.abspath(self.path)))
        if disk.f_bavail * disk.f_frsize < MIN_FREE_DISK_BYTES:
            raise StorageUnavailable(
                f"the disk of SQLite at {self.path} has less than {MIN_FREE_DISK_BYTES} bytes free"
            )

    # -- shops -----------------------------------------------------------------------------------

    @_measured
    def create_shop(self, new_shop: NewShop) -> Shop:
        shop = Shop(
            id=uuid.uuid4().hex,
            name=new_shop.name,
            address=new_shop.address,
            latitude=new_shop.latitude,
            longitude=new_shop.longitude,
            review_count=0,
            star_sum=0,
            created_at=utc_now(),
        )
        with self._write() as db:
            db.execute(
                f"INSERT INTO shops ({_SHOP_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",  # noqa: S608
                (
                    shop.id,
                    shop.name,
                    shop.address,
                    shop.latitude,
                    shop.longitude,
                    0,
                    0,
                    timestamp(shop.created_at),
                ),
            )
        return shop

    @_measured
    def get_shop(self, shop_id: str) -> Shop:
        row = self._db.execute(
            f"SELECT {_SHOP_COLUMNS} FROM shops WHERE id = ?",  # noqa: S608
            (shop_id,),
        ).fetchone()
        if row is None:
            raise ShopNotFound(shop_id)
        return _shop(row)

    @_measured
    def list_shops(self, limit: int, cursor: Optional[str] = None) -> Page[Shop]:
        params: Dict[str, object] = {"limit": limit + 1}
        where = ""
        if cursor is not None:
            position = self._cursors.decode("shops", cursor, {"s": int, "n": int, "id": str})
            score = (_P + position["s"]) / (_C + position["n"])
            params.update(s=position["s"], n=position["n"], id=position["id"], score=score)
            where = f"WHERE {_AFTER_RANK_KEY}"
        rows = self._db.execute(
            f"SELECT {_SHOP_COLUMNS} FROM shops {where} {_RANKED_ORDER} LIMIT :limit",  # noqa: S608
            params,
        ).fetchall()
        shops = [_shop(row) for row in rows]
        return cursors.page_of(
            shops,
            limit,
            lambda last: self._cursors.encode(
                "shops", {"s": last.star_sum, "n": last.review_count, "id": last.id}
            ),
        )

    @_measured
    def delete_shop(self, shop_id: str) -> List[str]:
        with self._write() as db:
            keys = [row["key"] for row in db.execute("SELECT key FROM photos WHERE shop_id = ?", (shop_id,))]
            # Its reviews and photos go with it: ON DELETE CASCADE, in this transaction.
            if db.execute("DELETE FROM shops WHERE id = ?", (shop_id,)).rowcount == 0:
                raise ShopNotFound(shop_id)
        return keys

    # -- reviews ---------------------------------------------------------------------------------

    @_measured
    def put_review(self, shop_id: str, user: str, stars: int, text: Optional[str]) -> ReviewWrite:
        now = timestamp(utc_now())
        with self._write() as db:
            if db.execute("SELECT 1 FROM shops WHERE id = ?", (shop_id,)).fetchone() is None:
                raise ShopNotFound(shop_id)
            existing = db.execute(
                "SELECT created_at FROM reviews WHERE shop_id = ? AND user_id = ?", (shop_id, user)
            ).fetchone()
            if existing is None:
                db.execute(
                    "INSERT INTO reviews (shop_id, user_id, stars, text, created_at, updated_at)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    (shop_id, user, stars, text, now, now),
                )
                created_at = now
            else:
                db.execute(
                    "UPDATE reviews SET stars = ?, text = ?, updated_at = ?"
                    " WHERE shop_id = ? AND user_id = ?",
                    (stars, text, now, shop_id, user),
                )
                created_at = existing["created_at"]
        review = Review(
            shop_id=shop_id,
            user=user,
            stars=stars,
            text=text,
            created_at=datetime.fromisoformat(created_at),
            updated_at=datetime.fromisoformat(now),
        )
        return ReviewWrite(review=review, replaced=existing is not None)

    @_measured
    def list_reviews(self, shop_id: str, limit: int, cursor: Optional[str] = None) -> Page[Review]:
        self.get_shop(shop_id)
        params = {"shop_id": shop_id, "limit": limit + 1, "after": ""}
        if cursor is not None:
            params["after"] = self._cursors.decode(f"reviews/{shop_id}", cursor, {"user": str})["user"]
        rows = self._db.execute(
            "SELECT shop_id, user_id, stars, text, created_at, updated_at FROM reviews"
            " WHERE shop_id = :shop_id AND user_id > :after ORDER BY user_id LIMIT :limit",
            params,
        ).fetchall()
        reviews = [
            Review(
                shop_id=row["shop_id"],
                user=row["user_id"],
                stars=row["stars"],
                text=row["text"],
                created_at=datetime.fromisoformat(row["created_at"]),
                updated_at=datetime.fromisoformat(row["updated_at"]),
            )
            for row in rows
        ]
        return cursors.page_of(
            reviews, limit, lambda last: self._cursors.encode(f"reviews/{shop_id}", {"user": last.user})
        )

    # -- photos ----------------------------------------------------------------------------------

    @_measured
    def add_photo(self, photo: Photo) -> None:
        try:
            with self._write() as db:
                db.execute(
                    "INSERT INTO photos (id, shop_id, key, content_type, size, created_at)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    (
                        photo.id,
                        photo.shop_id,
                        photo.key,
                        photo.content_type,
                        photo.size,
                        timestamp(photo.created_at),
                    ),
                )
        except sqlite3.IntegrityError as error:
            if "FOREIGN KEY" in str(error):
                raise ShopNotFound(photo.shop_id) from error
            raise

    @_measured
    def list_photos(self, shop_id: str, limit: int, cursor: Optional[str] = None) -> Page[Photo]:
        self.get_shop(shop_id)
        params = {"shop_id": shop_id, "limit": limit + 1, "t": "", "id": ""}
        if cursor is not None:
            params.update(self._cursors.decode(f"photos/{shop_id}", cursor, {"t": str, "id": str}))
        rows = self._db.execute(
            "SELECT id, shop_id, key, content_type, size, created_at FROM photos"
            " WHERE shop_id = :shop_id AND (created_at > :t OR (created_at = :t AND id > :id))"
            " ORDER BY created_at, id LIMIT :limit",
            params,
        ).fetchall()
        photos = [
            Photo(
                id=row["id"],
                shop_id=row["shop_id"],
                key=row["key"],
                content_type=row["content_type"],
                size=row["size"],
                created_at=datetime.fromisoformat(row["created_at"]),
            )
            for row in rows
        ]
        return cursors.page_of(
            photos,
            limit,
            lambda last: self._cursors.encode(
                f"photos/{shop_id}", {"t": timestamp(last.created_at), "id": last.id}
            ),
        )


def _shop(row: sqlite3.Row) -> Shop:
    return Shop(
        id=row["id"],
        name=row["name"],
        address=row["address"],
        latitude=row["latitude"],
        longitude=row["longitude"],
        review_count=row["review_count"],
        star_sum=row["star_sum"],
        created_at=datetime.fromisoformat(row["created_at"]),
    )
