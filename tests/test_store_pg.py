"""The PostgreSQL store: the same answers as SQLite, and servers sharing one ban list.

A PostgreSQL server is started for these tests from Debian's postgresql package in a temporary folder
(.ci/run installs the package); without its binaries they are skipped with the reason.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image

from dedupe import fingerprint
from dedupe.cli import cli
from dedupe.errors import StoreError
from dedupe.exchange import read_list
from dedupe.models import ListedFingerprint, PdqEntry
from dedupe.search import SearchIndex, check, find_similar
from dedupe.store_pg import PostgresStore, open_any
from tests.conftest import REPO, draw_photo, run_dedupe, save
from tests.serving import TOKEN, Postgres, postgres_bin, postgres_server, serving, token_file, wait_for

pytest.importorskip("psycopg", reason="the PostgreSQL store needs psycopg: pip install -e '.[test]'")
if postgres_bin() is None:
    pytest.skip(
        "no PostgreSQL server binaries (apt-get install postgresql; .ci/run installs them)", allow_module_level=True
    )


@pytest.fixture(scope="module")
def postgres() -> Iterator[Postgres]:
    with postgres_server() as server:
        yield server


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Banned originals, their edited copies and unrelated photos, and the banned ones' exported list."""
    root = tmp_path_factory.mktemp("pg-photos")
    out: dict[str, Path] = {}
    for seed in range(4):
        im = draw_photo(seed)
        out[f"banned{seed}"] = save(im, root / "banned" / f"b{seed}.jpg", quality=90)
        out[f"resized{seed}"] = save(im.resize((700, 525)), root / "queries" / f"r{seed}.jpg", quality=85)
        out[f"png{seed}"] = save(im, root / "queries" / f"p{seed}.png")
    for seed in range(200, 203):
        out[f"other{seed}"] = save(draw_photo(seed), root / "queries" / f"o{seed}.jpg", quality=90)
    scanned = root / "scanned.sqlite"
    assert run_dedupe("scan", str(root / "banned"), "--db", str(scanned), "-q").returncode == 0
    out["list"] = root / "list.csv"
    assert run_dedupe("export", "--db", str(scanned), "-o", str(out["list"])).returncode == 0
    return out


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty store of each backend."""
    if request.param == "sqlite":
        return str(tmp_path / "bans.sqlite")
    postgres: Postgres = request.getfixturevalue("postgres")
    return postgres.new_database()


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.output


def test_check_and_search_give_the_same_answers_on_sqlite_and_postgresql(
    photos: dict[str, Path], postgres: Postgres, tmp_path: Path
) -> None:
    answers = []
    for db in (str(tmp_path / "bans.sqlite"), postgres.new_database()):
        code, output = invoke("import", str(photos["list"]), "--db", db)
        assert code == 0, output
        queries = sorted(str(p) for name, p in photos.items() if name != "list" and not name.startswith("banned"))
        checked = invoke("check", *queries, "--db", db, "--format", "json")
        searched = invoke("search", *queries, "--db", db, "--format", "json", "--threshold", "20")
        answers.append((checked, searched))
    sqlite_answers, postgres_answers = answers
    assert sqlite_answers == postgres_answers
    (code, check_output), _ = postgres_answers
    assert code == 1
    matched = {Path(r["image"]).stem: r["match"] for r in json.loads(check_output)}
    assert matched == {**{f"r{s}": True for s in range(4)}, **{f"p{s}": True for s in range(4)}} | {
        f"o{s}": False for s in range(200, 203)
    }


def test_both_backends_store_and_forget_single_fingerprints_alike(db: str) -> None:
    item = ListedFingerprint("a" * 32, "b" * 32, 1 << 63, 5, 640, 480, False, "ban one")
    watcher = open_any(db)
    before = watcher.data_version()
    with open_any(db) as store:
        ident, added = store.add_one_imported(item, fingerprint.VERSION, "api")
        again = store.add_one_imported(item, fingerprint.VERSION, "api")
        entries = store.imported_entries(fingerprint.VERSION, "ban one")
        assert store.imported_entries(None, "no such label") == []
        assert store.add_pdq([PdqEntry("f" * 64, "pdq one", 90)], "list.txt") == 1
        assert [e for _, e in store.pdq_entries()] == [PdqEntry("f" * 64, "pdq one", 90)]
        assert store.forget_imported_ids([ident]) == 1
        assert store.forget_imported_ids([ident]) == 0
        assert store.count_imported() == 0
    assert (added, again) == (True, (ident, False))
    assert [(i, e.label, e.phash) for i, e, _, _ in entries] == [(ident, "ban one", 1 << 63)]
    with watcher:  # another connection sees that the store changed
        assert watcher.data_version() != before


def test_an_index_over_postgresql_sees_what_was_imported(photos: dict[str, Path], postgres: Postgres) -> None:
    with PostgresStore.open(postgres.new_database()) as store:
        with photos["list"].open() as f:
            items = read_list(f, "list")
        with store.transaction():
            store.add_imported(items, fingerprint.VERSION, "list")
        index = SearchIndex.load(store)
        assert len(index) == 4
        result = check(photos["resized2"], index)
        direct = find_similar(photos["resized2"], store)
    assert result.matched
    assert result.hit is not None and result.hit.name == str(photos["banned2"])
    assert direct.hits[0] == result.hit


def test_a_wrong_address_or_password_is_a_readable_error(postgres: Postgres) -> None:
    with pytest.raises(StoreError, match="cannot open the store at postgresql://nobody@"):
        PostgresStore.open(postgres.url("no_such_database").replace(postgres.user, "nobody:secret"))
    code, output = invoke("check", "x.jpg", "--db", postgres.url("no_such_database"))
    assert code == 2
    assert "cannot open the store" in output
    assert "Traceback" not in output


def test_a_store_refused_at_opening_leaves_no_connection(postgres: Postgres) -> None:
    """A database that holds no dedupe store, opened read-only, is refused with a StoreError and its connection
    closed: a server trying again and again does not pile up connections."""
    import psycopg

    url = postgres.new_database()
    name = url.partition("@/")[2].partition("?")[0]

    def connections() -> int:
        with psycopg.connect(postgres.url(), autocommit=True) as conn:
            row = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s", (name,)).fetchone()
        return int(row[0]) if row else 0

    refused = []
    for _ in range(3):
        with pytest.raises(StoreError, match="no dedupe store") as caught:
            PostgresStore.open(url, readonly=True)
        refused.append(caught)  # kept, as a caller's traceback may keep it
    wait_for(lambda: connections() == 0, what="the refused connections to close")


def test_two_servers_on_one_postgresql_store_share_bans(postgres: Postgres, tmp_path: Path) -> None:
    url = postgres.new_database()
    tokens = token_file(tmp_path)
    photo = draw_photo(9)
    upload, copy = io.BytesIO(), io.BytesIO()
    photo.save(upload, "JPEG", quality=90)
    photo.resize((640, 480), Image.Resampling.LANCZOS).save(copy, "PNG")
    with serving(url, tokens=tokens) as first, serving(url, tokens=tokens) as second, second.client() as reader:
        answer = reader.post("/v1/check", content=copy.getvalue(), headers={"Content-Type": "image/png"})
        assert answer.json()["match"] is False
        with first.client(TOKEN) as moderator:
            added = moderator.post(
                "/v1/fingerprints",
                params={"label": "banned on the first"},
                content=upload.getvalue(),
                headers={"Content-Type": "image/jpeg"},
            )
        assert added.status_code == 201
        wait_for(lambda: reader.get("/v1/status").json()["fingerprints"] == 1, what="the second server")
        answer = reader.post("/v1/check", content=copy.getvalue(), headers={"Content-Type": "image/png"})
        status = reader.get("/v1/status").json()
    assert answer.json()["closest"]["name"] == "banned on the first"
    assert status["store"] == "postgresql"


def test_an_import_into_postgresql_is_seen_by_a_running_server(photos: dict[str, Path], postgres: Postgres) -> None:
    url = postgres.new_database()
    with serving(url) as server, server.client() as client:
        assert client.get("/v1/status").json()["fingerprints"] == 0
        imported = run_dedupe("import", str(photos["list"]), "--db", url)
        assert imported.returncode == 0, imported.stderr
        wait_for(lambda: client.get("/v1/status").json()["fingerprints"] == 4, what="the server seeing the import")
        answer = client.post(
            "/v1/check", content=photos["png1"].read_bytes(), headers={"Content-Type": "image/png"}
        ).json()
    assert answer["closest"]["name"] == str(photos["banned1"])


def test_export_from_postgresql_gives_back_the_list(photos: dict[str, Path], postgres: Postgres) -> None:
    url = postgres.new_database()
    assert invoke("import", str(photos["list"]), "--db", url)[0] == 0
    code, output = invoke("export", "--db", url)
    assert code == 0
    original = photos["list"].read_text().splitlines()
    exported = [line for line in output.splitlines() if not line.startswith("Exported")]
    assert exported == original


def test_a_broken_connection_is_made_again_after_one_error(postgres: Postgres) -> None:
    import psycopg

    url = postgres.new_database()
    with PostgresStore.open(url) as store:
        assert store.count_imported() == 0
        with psycopg.connect(url, autocommit=True) as admin:
            # What a database restart does to its clients.
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        with pytest.raises(StoreError, match="cannot read the store"):
            store.count_imported()
        assert store.count_imported() == 0


def test_a_postgresql_store_without_psycopg_names_the_install_command(tmp_path: Path) -> None:
    blocked = (
        "import sys; sys.modules['psycopg'] = None;"
        "from dedupe.cli import main; sys.argv = ['dedupe', 'check', sys.argv[1], '--db', sys.argv[2]]; main()"
    )
    photo = save(draw_photo(1), tmp_path / "a.jpg")
    result = subprocess.run(
        [sys.executable, "-c", blocked, str(photo), "postgresql://nobody@/nowhere"],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        cwd=REPO,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.strip() == "Error: a postgresql:// store needs psycopg: pip install 'photo-dedupe[postgres]'"


def test_both_backends_keep_the_first_of_repeated_fingerprints_in_list_order(db: str) -> None:
    def listed(content: str, label: str) -> ListedFingerprint:
        return ListedFingerprint(content * 32, "e" * 32, 7, 9, 10, 10, False, label)

    items = [listed("c", "third"), listed("a", "first"), listed("c", "again"), listed("b", "second")]
    with open_any(db) as store:
        with store.transaction():
            added = store.add_imported(items, fingerprint.VERSION, "list")
        with store.transaction():
            added_again = store.add_imported(items[:2], fingerprint.VERSION, "list")
        assert (added, added_again) == (3, 0)
        assert [e.label for e in store.imported()] == ["third", "first", "second"]
        pdq_entries = [PdqEntry("1" * 64, "one"), PdqEntry("1" * 64, "one again"), PdqEntry("2" * 64, "two")]
        with store.transaction():
            assert store.add_pdq(pdq_entries, "list.pdq") == 2
        assert [e.label for _, e in store.pdq_entries()] == ["one", "two"]
