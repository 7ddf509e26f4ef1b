"""The SQLite backend's own promises: WAL, foreign keys, versioned migrations."""

import sqlite3

import pytest

from coffee_ranker.domain.errors import SchemaTooNew, ShopNotFound
from coffee_ranker.domain.models import NewShop, Photo, utc_now
from coffee_ranker.storage import sqlite as sqlite_backend
from coffee_ranker.storage.sqlite import SqliteRepository


@pytest.fixture
def repository(tmp_path):
    repo = SqliteRepository(str(tmp_path / "ranker.sqlite3"))
    repo.open()
    yield repo
    repo.close()


def test_a_new_database_is_migrated_to_the_latest_schema_in_wal_mode(repository):
    raw = sqlite3.connect(repository.path)
    assert raw.execute("PRAGMA user_version").fetchone()[0] == sqlite_backend.SCHEMA_VERSION
    assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    tables = {row[0] for row in raw.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"shops", "reviews", "photos"} <= tables
    raw.close()


def test_migrating_again_changes_nothing(repository):
    shop = repository.create_shop(NewShop(name="A", address="B"))
    assert repository.migrate() == sqlite_backend.SCHEMA_VERSION
    assert repository.get_shop(shop.id) == shop


def test_a_database_from_a_newer_release_is_refused(tmp_path):
    path = str(tmp_path / "newer.sqlite3")
    raw = sqlite3.connect(path)
    raw.execute(f"PRAGMA user_version = {sqlite_backend.SCHEMA_VERSION + 1}")
    raw.close()
    with pytest.raises(SchemaTooNew, match="newer than this release knows"):
        SqliteRepository(path).open()


def test_pending_migrations_are_applied_in_order(tmp_path, monkeypatch):
    path = str(tmp_path / "old.sqlite3")
    SqliteRepository(path).open()
    later = (sqlite_backend.SCHEMA_VERSION + 1, ("ALTER TABLE shops ADD COLUMN website TEXT",))
    monkeypatch.setattr(sqlite_backend, "MIGRATIONS", (*sqlite_backend.MIGRATIONS, later))
    monkeypatch.setattr(sqlite_backend, "SCHEMA_VERSION", later[0])
    repo = SqliteRepository(path)
    repo.open()
    columns = [row[1] for row in sqlite3.connect(path).execute("PRAGMA table_info(shops)")]
    assert "website" in columns
    repo.close()


def test_foreign_keys_are_enforced(repository):
    orphan = Photo(
        id="a" * 32,
        shop_id="b" * 32,
        key="media/x.jpg",
        content_type="image/jpeg",
        size=1,
        created_at=utc_now(),
    )
    with pytest.raises(ShopNotFound):
        repository.add_photo(orphan)


def test_the_aggregates_cannot_drift_from_the_reviews(repository):
    shop = repository.create_shop(NewShop(name="A", address="B"))
    for user, stars in [("a", 5), ("b", 2), ("a", 1)]:
        repository.put_review(shop.id, user, stars, None)
    stored = repository.get_shop(shop.id)
    assert (stored.review_count, stored.star_sum) == (2, 3)


def ranked_listing_plan(repository, cursor=None) -> str:
    """The query plan of the listing as list_shops runs it, with the index or without."""
    statements = []
    db = repository._db
    db.set_trace_callback(statements.append)
    try:
        repository.list_shops(10, cursor)
    finally:
        db.set_trace_callback(None)
    (statement,) = [s for s in statements if s.lstrip().startswith("SELECT")]
    return " | ".join(row[-1] for row in db.execute("EXPLAIN QUERY PLAN " + statement))


def test_the_ranked_listing_walks_an_index_instead_of_sorting_every_shop(repository):
    for n in range(30):
        shop = repository.create_shop(NewShop(name=f"S{n}", address="B"))
        for user in range(n % 4):
            repository.put_review(shop.id, f"u{user}", 1 + (n + user) % 5, None)
    first = repository.list_shops(10)
    for cursor in (None, first.next_cursor):
        plan = ranked_listing_plan(repository, cursor)
        assert "shops_by_rank" in plan, plan
        assert "TEMP B-TREE" not in plan, f"no sort per request: {plan}"
    # And the index's order is the exact ranking, page after page.
    pages, cursor = [], None
    while True:
        page = repository.list_shops(7, cursor)
        pages += page.items
        cursor = page.next_cursor
        if cursor is None:
            break
    assert [shop.id for shop in pages] == [
        shop.id for shop in sorted(pages, key=lambda shop: shop.rank_key.sort_key())
    ]
    assert len(pages) == 30
