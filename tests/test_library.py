"""The columnar path: a store read straight into a Library and grouped there gives exactly find_groups's answer."""

from __future__ import annotations

import os
import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dedupe import fingerprint, store_library
from dedupe import library as library_module
from dedupe.errors import StoreError
from dedupe.group import find_groups, find_groups_in, split_not_duplicates, stored_groups
from dedupe.library import Library
from dedupe.match import MatchRule, searches_crops
from dedupe.models import CROP_BYTES, CROP_WINDOWS, FileRecord, Fingerprint, MatchKind
from dedupe.store import Store
from tests.conftest import make_fingerprint, make_record
from tests.test_group_reference import clustered_library

VERSION = fingerprint.VERSION
_W = len(CROP_WINDOWS)


def stat_of(r: FileRecord) -> os.stat_result:
    """The stat a scan would have seen for this record."""
    return os.stat_result((0o100644, r.ino, r.dev, 1, 0, 0, r.size, 0, 0, 0, 0.0, 0.0, 0.0, 0, r.mtime_ns, 0))


def write(store: Store, records: list[FileRecord], version: str = VERSION) -> None:
    with store.transaction():
        for r in records:
            store.put_fingerprint(r.fingerprint, version)
            store.put_file(r.path, stat_of(r), r.content_hash)


def with_crops(records: list[FileRecord], rng: random.Random) -> list[FileRecord]:
    """Crop signatures for some pictures, some of them cut from another's window (as a crop would be)."""
    made: dict[str, bytes] = {}
    for r in records:
        fp = r.fingerprint
        if fp.content_hash in made or rng.random() < 0.4:
            continue
        sig = bytearray(rng.randbytes(CROP_BYTES))
        others = [s for s in made.values() if s]
        if others and rng.random() < 0.5:
            # The whole picture is one of another's windows, a little changed: a crop of it.
            src, w = rng.choice(others), rng.randrange(1, _W)
            for start, bits in ((0, 5), (8 * _W, 7)):
                value = int.from_bytes(src[start + 8 * w : start + 8 * w + 8], "big")
                for bit in rng.sample(range(64), rng.randrange(bits + 1)):
                    value ^= 1 << bit
                sig[start : start + 8] = value.to_bytes(8, "big")
            sig[16 * _W : 16 * _W + 3] = src[16 * _W + 3 * w : 16 * _W + 3 * w + 3]
        made[fp.content_hash] = bytes(sig)
    return [
        replace(r, fingerprint=replace(r.fingerprint, crops=made[r.content_hash])) if r.content_hash in made else r
        for r in records
    ]


def library_in(root: str, seed: int, n: int) -> list[FileRecord]:
    """clustered_library below root, with crop signatures."""
    rng = random.Random(seed)
    records = with_crops(clustered_library(seed, n), rng)
    return [replace(r, path=root + r.path) for r in records]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.integers(0, 10**6),
    st.integers(1, 90),
    st.integers(0, 10),
    st.booleans(),
    st.booleans(),
    st.booleans(),
    st.sampled_from([None, True, False]),
)
def test_stored_groups_equal_find_groups_on_the_records(
    tmp_path: Path,
    seed: int,
    n: int,
    threshold: int,
    rotations: bool,
    two_stage: bool,
    bursts_apart: bool,
    crops: bool | None,
) -> None:
    root = str(tmp_path.resolve() / f"lib-{uuid.uuid4().hex}")
    records = library_in(root, seed, n)
    rng = random.Random(seed)
    with Store.open(Path(root + ".sqlite")) as store:
        write(store, records)
        # Fingerprints of another version and files outside the root are not looked at.
        write(store, [replace(r, path=root + "-other" + r.path[len(root) :]) for r in records[:5]])
        old = [replace(r, fingerprint=replace(r.fingerprint, content_hash="old" + r.content_hash)) for r in records[:3]]
        write(store, [replace(r, path=f"{root}/old/{k}.jpg") for k, r in enumerate(old)], "old-version")
        hashes = sorted({r.content_hash for r in records})
        store.add_not_duplicates((rng.choice(hashes), rng.choice(hashes)) for _ in range(rng.randrange(4)))
        kw = {"rotations": rotations, "two_stage": two_stage, "bursts_apart": bursts_apart}
        got, _, images = stored_groups(store, [root], MatchRule(threshold, crops=crops, **kw))
        stored = store.records_under([root], VERSION, crops=searches_crops(len(records), crops))
        decided = searches_crops(len(stored), crops)
        expected = split_not_duplicates(
            find_groups(stored, MatchRule(threshold, crops=decided, **kw)),
            store.not_duplicate_pairs(),
            MatchRule(threshold, crops=decided, **kw),
        )
    assert images == len(records) == len(stored)
    assert got == expected  # members, order, distances, transforms, crop marks and reasons


def test_the_store_path_meets_every_kind_of_match(tmp_path: Path) -> None:
    # The libraries of the test above hold every case: this one shows that they really do.
    root = str(tmp_path.resolve() / "lib")
    records = library_in(root, 5, 1500)
    with Store.open(tmp_path / "store.sqlite") as store:
        write(store, records)
        groups, _, _ = stored_groups(store, [root], MatchRule(6))
        assert groups == find_groups(store.records_under([root], VERSION), MatchRule(6, crops=True))
    members = [m for g in groups for m in g.members[1:]]
    assert {m.match for m in members} == {MatchKind.EXACT, MatchKind.IMAGE, MatchKind.NEAR}
    assert any(m.transform for m in members) and any(m.dhash is not None and not m.crop for m in members)
    assert {m.crop for m in members} >= {"crop", "wider"}
    hardlinked = {(r.dev, r.ino) for r in records if sum((q.dev, q.ino) == (r.dev, r.ino) for q in records) > 1}
    assert hardlinked  # and no two paths of one inode in any group
    for g in groups:
        inodes = [(m.file.dev, m.file.ino) for m in g.members]
        assert len(inodes) == len(set(inodes))


def odd_records(root: str) -> list[FileRecord]:
    """Files with awkward names and values: names that are not UTF-8 (which sort otherwise as bytes than as
    strings), non-ASCII text, values this dedupe never writes (3 variants, a short crop signature), two devices."""
    rng = random.Random(7)

    def fp(k: int, **kw: Any) -> Fingerprint:
        base = make_fingerprint(
            content_hash=f"c{k}",
            image_hash=f"i{k % 5}",
            width=100 + k,
            height=80,
            phash=rng.getrandbits(64),
            dhash=rng.getrandbits(64),
            variants=tuple(rng.getrandbits(64) for _ in range(7)),
        )
        return replace(base, **kw)

    names = [os.fsdecode(b"\xff.jpg"), "\ue000.jpg", "b.jpg", "Ünïcode.jpg", "a/deep/c.jpg", os.fsdecode(b"z\xc3.png")]
    fps = [
        fp(0, camera="Canon EOS R6", taken="2024-05-01T10:00:00.500000"),
        fp(1, variants=(1, 2, 3)),
        fp(2, crops=b"short"),
        fp(3, crops=rng.randbytes(CROP_BYTES), camera="Ünï"),
        fp(4, low_info=True, phash=2**64 - 1, dhash=2**63, camera="Canon\x00"),  # numpy would cut the NUL off
        fp(5, variants=(), taken="x" * 5000),  # too long for the packed lengths: that chunk is read again
    ]
    return [
        FileRecord(f"{root}/{name}", 10 * k, 7, 1 + k % 2, 100 + k, f)
        for k, (name, f) in enumerate(zip(names, fps, strict=True))
    ]


def same_columns(a: Library, b: Library) -> None:
    for name in Library.__slots__:
        if name in ("ids", "content", "image", "distinct_paths"):
            continue
        x, y = getattr(a, name), getattr(b, name)
        if name == "paths":
            assert list(x) == list(y)
        elif isinstance(x, np.ndarray):
            assert np.array_equal(x, y), name
        else:
            assert x == y, name
    for name in ("content", "image"):  # any numbering, the same partition
        x, y = getattr(a, name), getattr(b, name)
        assert np.array_equal(x[:, None] == x[None, :], y[:, None] == y[None, :]), name


@dataclass
class OddStore:
    """odd_records written to a store, read back as a Library (with crops) and as records in path order."""

    root: str
    records: list[FileRecord]
    store: Store
    library: Library
    stored: list[FileRecord]


@pytest.fixture
def odd_store(tmp_path: Path) -> Iterator[OddStore]:
    root = str(tmp_path.resolve() / "lib")
    records = odd_records(root)
    with Store.open(tmp_path / "store.sqlite") as store:
        write(store, records)
        library = store.library_under([root], VERSION, crops=True)
        stored = sorted(store.records_under([root], VERSION), key=lambda r: r.path)
        yield OddStore(root, records, store, library, stored)


def test_library_under_holds_the_values_of_records_under(odd_store: OddStore) -> None:
    root, records, store = odd_store.root, odd_store.records, odd_store.store
    library, stored = odd_store.library, odd_store.stored
    assert list(library.paths) == [r.path for r in stored] == sorted(r.path for r in records)
    assert library.distinct_paths
    # As strings \udcff (the byte 0xff) comes before \ue000; as bytes after it.
    ff, e000 = root + "/" + os.fsdecode(b"\xff.jpg"), root + "/\ue000.jpg"
    assert library.paths.index(ff) < library.paths.index(e000) and os.fsencode(ff) > os.fsencode(e000)
    same_columns(library, Library.from_records(stored))
    odd = ("\ue000.jpg", "b.jpg", "a/deep/c.jpg")
    assert sorted(library.odd) == sorted(library.paths.index(f"{root}/{name}") for name in odd)
    # The rowids give the records back, in the order asked; and so do the library's rows.
    assert store.records_by_id(library.ids[::-1].tolist()) == stored[::-1]
    assert store.records_of(library) == stored
    rows = np.array([4, 0, 3])
    assert store.records_of(library.take(rows)) == [stored[k] for k in rows]
    without = store.library_under([root], VERSION)
    assert without.crops.shape == (len(records), 0) and not without.has_crops.any()
    plain = sorted(store.records_under([root], VERSION, crops=False), key=lambda r: r.path)
    assert store.records_by_id(library.ids.tolist(), crops=False) == plain == store.records_of(without)


def test_records_are_made_alike_a_slice_of_rows_at_a_time(odd_store: OddStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """Records made a few rows at a time (odd rows, crop signatures and texts on either side of each cut) are the
    records read whole."""
    store, library, stored = odd_store.store, odd_store.library, odd_store.stored
    for at_once in (1, 2, 4):
        monkeypatch.setattr(library_module, "_RECORDS_AT_ONCE", at_once)
        assert store.records_of(library) == stored
        rows = np.array([5, 1, 4, 0])
        assert store.records_of(library.take(rows)) == [stored[k] for k in rows]


def test_records_are_read_alike_a_few_rowids_at_a_time(odd_store: OddStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """Records whose rowids are read in several statements (each cut falling between files of one image and
    another) are the records read in one."""
    store, library, stored = odd_store.store, odd_store.library, odd_store.stored
    for at_once in (1, 2, 3):
        monkeypatch.setattr(store_library, "_IDS_AT_ONCE", at_once)
        assert store.records_of(library) == stored


_ODD_NAMES = [os.fsdecode(b"/z\xc3.png"), os.fsdecode(b"\xff"), "/\ue000"]
_PATHS = st.lists(st.sampled_from(["/a/b.jpg", "/x.png", "", "/Ü/é.jpg", *_ODD_NAMES]), max_size=12)


@settings(max_examples=100, deadline=None)
@given(_PATHS, st.data())
def test_a_column_of_paths_reads_as_the_list_of_them(paths: list[str], data: st.DataObject) -> None:
    """A PathColumn's slices and the columns taken or cut from it hold the paths of the list, names that are not
    UTF-8 and empty ones included."""
    encoded = [library_module.encode_path(p) for p in paths]
    column = library_module.PathColumn(b"".join(encoded), np.cumsum([len(e) for e in encoded], dtype=np.int64))
    start, stop = data.draw(st.integers(-15, 15)), data.draw(st.integers(-15, 15))
    step = data.draw(st.sampled_from([None, 1, 2, -1]))
    assert column[start:stop:step] == paths[start:stop:step]
    rows = data.draw(st.lists(st.integers(0, len(paths) - 1), max_size=12) if paths else st.just([]))
    taken = column.take(np.array(rows, dtype=np.int64))
    assert list(taken) == [paths[k] for k in rows] == taken[:]
    first = data.draw(st.integers(0, len(paths)))
    last = data.draw(st.integers(first, len(paths)))
    assert list(column.part(first, last)) == paths[first:last]


def test_library_under_reads_each_file_below_the_roots_once(tmp_path: Path) -> None:
    base = os.path.realpath(tmp_path)
    paths = [
        f"{base}/a",
        f"{base}/a/x.jpg",
        f"{base}/a/sub/y.jpg",
        f"{base}/a b/z.jpg",
        f"{base}/ab/w.jpg",
        f"{base}/b.jpg",
    ]
    records = [
        make_record(p, size=1, ino=k, content_hash=f"c{k}", image_hash=f"i{k}", width=1, height=1, phash=k, dhash=k)
        for k, p in enumerate(paths)
    ]
    with Store.open(tmp_path / "store.sqlite") as store:
        write(store, records)
        for roots in (
            [f"{base}/a"],
            [f"{base}/a", f"{base}/a/sub", f"{base}/a"],
            [f"{base}/b.jpg", f"{base}/a/sub"],
            [f"{base}/ab", f"{base}/a b", f"{base}/a"],
            ["/"],
            [],
        ):
            got = store.library_under(roots, VERSION).paths
            assert list(got) == [r.path for r in store.records_under(roots, VERSION)], roots
        assert list(store.library_under([f"{base}/nothing"], VERSION).paths) == []
        assert len(store.library_under([base], "other-version")) == 0
        with pytest.raises(StoreError, match="no longer in the store"):
            store.records_by_id([12345])


def test_groups_need_the_record_of_every_grouped_file(tmp_path: Path) -> None:
    records = clustered_library(1, 200)
    files = sorted({(r.dev, r.ino): r for r in records}.values(), key=lambda r: r.path)
    grouping = find_groups_in(Library.from_records(files))
    assert len(grouping) > 0
    with pytest.raises(ValueError, match="records are needed"):
        grouping.groups(files)


@pytest.mark.parametrize(("first", "second"), [("abc", "abc\x00"), ("abc\x00", "abc\x00\x00"), ("", "\x00")])
def test_image_hashes_differing_in_trailing_nuls_are_other_images(tmp_path: Path, first: str, second: str) -> None:
    # numpy cuts trailing NULs off byte strings: read naively, these two pictures would be one image class.
    root = str(tmp_path.resolve() / "lib")
    a = make_fingerprint(content_hash="c1", image_hash=first, width=100, height=100, phash=0xF0F0F0F0F0F0F0F0, dhash=1)
    b = make_fingerprint(
        content_hash="c2",
        image_hash=second,
        width=100,
        height=100,
        phash=0xF0F0F0F0F0F0F0F0 ^ ((1 << 40) - 1),
        dhash=2**64 - 1,
    )
    records = [FileRecord(root + "/a.jpg", 10, 1, 1, 1, a), FileRecord(root + "/b.jpg", 10, 1, 1, 2, b)]
    with Store.open(tmp_path / "s.sqlite") as store:
        write(store, records)
        assert stored_groups(store, [root], MatchRule(4))[0] == []
        same = replace(records[1], fingerprint=replace(b, image_hash=first))
        write(store, [same])
        (group,) = stored_groups(store, [root], MatchRule(4))[0]
        assert [m.match for m in group.members] == [MatchKind.EXACT, MatchKind.IMAGE]
