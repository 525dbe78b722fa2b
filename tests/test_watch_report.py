"""watch_report: the index of the store that a watcher keeps between report rounds answers as a fresh one does."""

from __future__ import annotations

import importlib
import shutil
import sqlite3
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from dedupe import fingerprint
from dedupe.match import MatchRule
from dedupe.models import MatchKind, WatchEvent
from dedupe.scan import fingerprint_files, scan
from dedupe.store import Store
from dedupe.watch_report import DuplicateReporter
from tests.conftest import draw_photo, run_dedupe, save, transparent_logo
from tests.test_crops import CROP15, crop

match_module = importlib.import_module("dedupe.match")
watch_report = importlib.import_module("dedupe.watch_report")


class Rounds:
    """A reporter kept from round to round, as a watcher keeps it, and beside it in each round a new one, whose
    index is read fresh from the store: both are asked about the same new files."""

    def __init__(self, store: Store, rule: MatchRule) -> None:
        self.store = store
        self.rule = rule
        self.events: list[WatchEvent] = []
        self.kept = DuplicateReporter(store, rule, self.events.append)

    def read(self, paths: Iterable[Path]) -> list[str]:
        """Read files into the store as the watcher does; the paths whose content is new there."""
        files = [(str(p), p.stat()) for p in paths]
        return list(fingerprint_files(files, self.store, workers=1).added)

    def round(self, *paths: Path) -> list[tuple[str | None, str | None, MatchKind | None]]:
        added = self.read(paths)
        self.events.clear()
        assert self.kept.report(added) == []
        fresh_events: list[WatchEvent] = []
        fresh = DuplicateReporter(self.store, self.rule, fresh_events.append)
        assert fresh.report(added) == []
        assert self.events == fresh_events
        kept_index, fresh_index = self.kept._index, fresh._index
        assert kept_index.rule == fresh_index.rule
        # Row numbers are the index's own (a VACUUM may renumber them behind its back): compared by content.
        assert [kept_index.keys[r] for r in kept_index.near_rows.tolist()] == [
            fresh_index.keys[r] for r in fresh_index.near_rows.tolist()
        ]
        assert np.array_equal(kept_index.near_hashes, fresh_index.near_hashes)
        assert [kept_index.keys[r] for r in kept_index.crop_rows.tolist()] == [
            fresh_index.keys[r] for r in fresh_index.crop_rows.tolist()
        ]
        assert np.array_equal(kept_index.crop_wholes, fresh_index.crop_wholes)
        assert np.array_equal(kept_index.crop_windows, fresh_index.crop_windows)
        return [(e.path, e.other, e.match) for e in self.events]


def forget(store: Store, *paths: Path) -> None:
    """Files deleted, as the watcher forgets them, and their fingerprints then (watch.ORPHANS_EVERY)."""
    for p in paths:
        p.unlink()
    with store.transaction():
        store.forget_files([str(p) for p in paths])
        store.forget_orphan_images()


def test_the_kept_index_answers_as_a_fresh_one_round_after_round(tmp_path: Path) -> None:
    """Round after round of new files, a removal, a replaced file, fingerprints added by a concurrent `dedupe scan`
    of the same store and a VACUUM, the reporter kept between rounds reports what one with a freshly read index
    reports, and its index holds the same."""
    library, incoming, other = tmp_path / "library", tmp_path / "incoming", tmp_path / "other"
    photos = [save(draw_photo(i, (640, 480)), library / f"p{i}.jpg", quality=90) for i in range(6)]
    transparent_logo(7, ring=True, background=10).save(library / "overlay.png")
    db = tmp_path / "store.sqlite"
    with Store.open(db) as store:
        scan([library], store)
        rounds = Rounds(store, MatchRule())

        incoming.mkdir()
        copy = incoming / "copy.jpg"
        shutil.copyfile(photos[0], copy)
        near = save(draw_photo(1, (640, 480)).resize((400, 300)), incoming / "near.png")
        cut = save(crop(draw_photo(2, (640, 480)), CROP15).resize((500, 375)), incoming / "cut.png")
        unrelated = save(draw_photo(50, (640, 480)), incoming / "unrelated.jpg", quality=90)
        assert rounds.round(copy, near, cut, unrelated) == [  # in the order of their paths
            (str(copy), str(photos[0]), MatchKind.EXACT),
            (str(cut), str(photos[2]), MatchKind.NEAR),
            (str(near), str(photos[1]), MatchKind.NEAR),
        ]

        forget(store, photos[3])
        gone_copy = save(draw_photo(3, (640, 480)).resize((400, 300)), incoming / "gone.png")
        second_copy = incoming / "copy2.jpg"
        shutil.copyfile(photos[0], second_copy)
        assert rounds.round(gone_copy, second_copy) == [(str(second_copy), str(photos[0]), MatchKind.EXACT)]

        save(draw_photo(60, (640, 480)), photos[4], quality=90)  # a new picture at a stored path
        rounds.read([photos[4]])
        with store.transaction():
            store.forget_orphan_images()
        old_picture = save(draw_photo(4, (640, 480)).resize((400, 300)), incoming / "old4.png")
        new_picture = save(draw_photo(60, (640, 480)).resize((400, 300)), incoming / "new4.png")
        assert rounds.round(old_picture, new_picture) == [(str(new_picture), str(photos[4]), MatchKind.NEAR)]

        found = [save(draw_photo(70 + i, (480, 360)), other / f"o{i}.jpg", quality=90) for i in range(3)]
        result = run_dedupe("scan", str(other), "--db", str(db), "-q")
        assert result.returncode == 0, result.stderr
        from_other = save(draw_photo(71, (480, 360)).resize((400, 300)), incoming / "from-other.png")
        assert rounds.round(from_other) == [(str(from_other), str(found[1]), MatchKind.NEAR)]

        forget(store, photos[5])
        with sqlite3.connect(db) as conn:
            conn.execute("VACUUM")  # numbers the rows anew, and no trigger fires
        after_vacuum = save(draw_photo(72, (480, 360)).resize((320, 240)), incoming / "after-vacuum.png")
        assert rounds.round(after_vacuum) == [(str(after_vacuum), str(found[2]), MatchKind.NEAR)]
        last = save(draw_photo(5, (640, 480)).resize((400, 300)), incoming / "last.png")
        assert rounds.round(last) == []


def test_the_kept_index_follows_the_crop_search_on_and_off(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Crops are looked for while the store holds up to match.CROP_SEARCH_LIMIT pictures: the kept index drops the
    crop windows when new pictures pass the limit, and reads them again when removals bring it back under."""
    library, incoming = tmp_path / "library", tmp_path / "incoming"
    photos = [save(draw_photo(i, (640, 480)), library / f"p{i}.jpg", quality=90) for i in range(4)]
    with Store.open(tmp_path / "store.sqlite") as store:
        scan([library], store)
        monkeypatch.setattr(match_module, "CROP_SEARCH_LIMIT", 5)
        rounds = Rounds(store, MatchRule())
        cut = save(crop(draw_photo(0, (640, 480)), CROP15).resize((500, 375)), incoming / "cut.png")
        assert rounds.round(cut) == [(str(cut), str(photos[0]), MatchKind.NEAR)]  # 5 pictures: crops looked for
        assert rounds.kept._index.rule.crops
        more = [save(draw_photo(20 + i, (640, 480)), incoming / f"more{i}.jpg", quality=90) for i in range(2)]
        cut_again = save(crop(draw_photo(1, (640, 480)), CROP15).resize((520, 390)), incoming / "cut1.png")
        assert rounds.round(*more, cut_again) == []  # 8 pictures: no crop search
        assert not rounds.kept._index.rule.crops
        forget(store, *more, cut_again, photos[3])
        last = save(crop(draw_photo(2, (640, 480)), CROP15).resize((480, 360)), incoming / "cut2.png")
        assert rounds.round(last) == [(str(last), str(photos[2]), MatchKind.NEAR)]  # 5 again
        assert rounds.kept._index.rule.crops


def test_a_fingerprint_that_becomes_this_version_joins_the_kept_index_in_its_place(tmp_path: Path) -> None:
    """A stored fingerprint of another version is not searched; written as this version at its row (no dedupe
    does so, another program may), it is, in the place a fresh read of the store gives it."""
    library, incoming = tmp_path / "library", tmp_path / "incoming"
    photos = [save(draw_photo(i, (640, 480)), library / f"p{i}.jpg", quality=90) for i in range(3)]
    db = tmp_path / "store.sqlite"
    with Store.open(db) as store:
        scan([library], store)
        with sqlite3.connect(db) as conn:
            conn.execute("UPDATE images SET version = 'older' WHERE rowid = (SELECT min(rowid) FROM images)")
            (content,) = conn.execute("SELECT content_hash FROM images WHERE version = 'older'").fetchone()
        older = next(p for p in photos if (row := store.get_file(str(p))) is not None and row.content_hash == content)
        rounds = Rounds(store, MatchRule())
        first = save(draw_photo(40, (640, 480)), incoming / "first.jpg", quality=90)
        assert rounds.round(first) == []
        with sqlite3.connect(db) as conn:
            conn.execute("UPDATE images SET version = ? WHERE content_hash = ?", (fingerprint.VERSION, content))
        with Image.open(older) as im:
            copy = save(im.resize((400, 300)), incoming / "copy.png")
        assert rounds.round(copy) == [(str(copy), str(older), MatchKind.NEAR)]


def test_a_fingerprint_that_comes_back_as_this_version_at_its_row_joins_the_kept_index_at_once(
    tmp_path: Path,
) -> None:
    """A picture last fingerprinted by another dedupe version (another ImageHash, say), whose file goes (its
    fingerprint dropped with it) and comes back (an undo) to be read as this version, is in the kept index in the
    round it comes back, as in a fresh one: its fingerprint then takes the row just freed, and the stored keys
    read as before, though nothing else came or went."""
    library, incoming = tmp_path / "library", tmp_path / "incoming"
    photos = [save(draw_photo(i, (640, 480)), library / f"p{i}.jpg", quality=90) for i in range(3)]
    db = tmp_path / "store.sqlite"
    with Store.open(db) as store:
        scan([library], store)
        with sqlite3.connect(db) as conn:  # the last one written, by another version
            conn.execute("UPDATE images SET version = 'older' WHERE rowid = (SELECT max(rowid) FROM images)")
            (content, row) = conn.execute("SELECT content_hash, rowid FROM images WHERE version = 'older'").fetchone()
        older = next(p for p in photos if (f := store.get_file(str(p))) is not None and f.content_hash == content)
        rounds = Rounds(store, MatchRule())
        copy = incoming / "copy.jpg"
        copy.parent.mkdir()
        shutil.copyfile(photos[0] if older != photos[0] else photos[1], copy)
        assert len(rounds.round(copy)) == 1
        aside = older.rename(tmp_path / "aside.jpg")
        with store.transaction():
            store.forget_files([str(older)])
            store.forget_orphan_images()
        aside.rename(older)
        assert rounds.round(older) == []
        with sqlite3.connect(db) as conn:
            assert conn.execute("SELECT rowid, version FROM images WHERE content_hash = ?", (content,)).fetchone() == (
                row,
                fingerprint.VERSION,
            )


def test_an_update_that_fails_part_way_is_read_whole_at_the_next_round(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When an update fails part way through (out of memory between merging the new rows' hashes and their crop
    windows), the round fails,
    and the next round answers as a fresh index does: nothing half-updated is kept."""
    library = tmp_path / "library"
    photos = [save(draw_photo(i, (640, 480)), library / f"p{i}.jpg", quality=90) for i in range(4)]
    copy = save(Image.open(photos[0]).resize((320, 240)), tmp_path / "in" / "copy.jpg")
    with Store.open(tmp_path / "s.sqlite") as store:
        rounds = Rounds(store, MatchRule())
        rounds.round(*photos[:2])
        added = rounds.read([photos[2]])
        merged = watch_report._merged
        calls = []

        def out_of_memory_at_the_crops(*args: Any, **kwargs: Any) -> Any:
            calls.append(1)
            if len(calls) == 2:  # the near hashes merged, not yet the crop windows
                raise MemoryError
            return merged(*args, **kwargs)

        monkeypatch.setattr(watch_report, "_merged", out_of_memory_at_the_crops)
        with pytest.raises(MemoryError):
            rounds.kept.report(added)
        monkeypatch.setattr(watch_report, "_merged", merged)
        assert rounds.round(photos[3], copy)[-1][2] is not None  # the copy is found, as by a fresh index
