"""Keeper rules and planning: pure, on records and on real scanned files."""

from __future__ import annotations

from dedupe.group import MatchRule
from dedupe.models import DuplicateGroup, GroupMember, MatchKind
from dedupe.plan import plan
from tests.conftest import make_record


def test_the_runs_threshold_decides_whether_a_copy_beside_crops_is_a_plain_near_copy() -> None:
    """A copy in a group with crops goes only when it is a near copy of its keeper under the run's own rule: at
    --threshold 2, a copy 3 bits away is not one, though the default threshold (4) would call it one."""
    keeper = make_record("/p/keeper.jpg", ino=1, content_hash="k" * 32, image_hash="K" * 32, phash=0, dhash=0)
    # Three pHash bits from the keeper, and a dHash far off, so that only the pHash threshold can match them.
    near = make_record("/p/near.jpg", ino=2, content_hash="n" * 32, image_hash="N" * 32, phash=0b111, dhash=2**64 - 1)
    group = DuplicateGroup(
        MatchKind.NEAR,
        (GroupMember(keeper, MatchKind.EXACT, 0), GroupMember(near, MatchKind.NEAR, 3, crop="crop")),
    )
    by_default = plan([group], keepers={0: keeper.path})
    assert [s.file.path for s in by_default.steps] == [near.path]
    strict = plan([group], keepers={0: keeper.path}, match_rule=MatchRule(threshold=2))
    assert strict.steps == ()
    assert "neither a crop nor a copy of its keeper" in strict.groups[0].left[0].reason
    loose = plan([group], keepers={0: keeper.path}, match_rule=MatchRule(threshold=8, crops=True))
    assert [s.file.path for s in loose.steps] == [near.path]
