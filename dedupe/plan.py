"""Choosing the keeper and planning what to do with each group's redundant copies: pure, nothing is changed.

A plan never touches a group's keeper, a file in a reference folder, or the keeper's own file reached by another
path (a hard link, a bind mount, a symlinked folder, another mount's view): a group always keeps at least one copy.
A RAW file is an original, not a copy of its developed JPEG or HEIC twin: without include_raw, a plan removes a RAW
only in favour of a RAW with the same bytes, and never removes a JPEG/HEIC in favour of a RAW.

Planning reads no file; to show each copy's sidecars it lists the copies' folders, through sidecars.py.
"""
# ruff: noqa: PTH100, PTH111, PTH118, PTH120

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime

from dedupe.errors import DedupeError
from dedupe.match import CROP, KIND_RANK, WIDER, MatchRule, crop_match, match, match_distance, shows_more
from dedupe.models import (
    ALPHA_VARIANTS,
    RAW_PREFIX,
    Action,
    DuplicateGroup,
    FileRecord,
    GroupMember,
    GroupPlan,
    KeeperChoice,
    KeeperRule,
    MatchKind,
    Plan,
    Skipped,
    Step,
)
from dedupe.sidecars import CARRIES_SIDECARS, SidecarFinder

RULE_NAMES = (
    "resolution",
    "metadata",
    "format",
    "taken",
    "order",
    "size",
    "oldest",
    "newest",
    "shortest",
    "name",
    "path",
)
# The original first: the most pixels; then the file holding the camera's own metadata; a camera format over an
# export made from it (a PNG or WebP of a JPEG is not better for being bigger); the earliest date taken; the folder
# named first; the largest file (among copies of one image, the one with the most metadata); the oldest file; and
# last the path, so that the default never ties.
DEFAULT_RULES_TEXT = "resolution,metadata,format,taken,order,size,oldest,name"
# Formats a camera or phone writes; others (PNG, WebP, GIF, BMP, AVIF) are exports made from a photo.
CAMERA_FORMATS = frozenset({"JPEG", "HEIF", "TIFF"})

# What counts as a duplicate when the caller does not say: the grouping's own default.
DEFAULT_MATCH_RULE = MatchRule()

# --- keeper rules -----------------------------------------------------------------------------------------------


def parse_rules(text: str) -> tuple[KeeperRule, ...]:
    """An ordered rule list such as "resolution,size,oldest,path:/mnt/photos"."""
    rules: list[KeeperRule] = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        name, sep, arg = part.partition(":")
        name = name.strip().lower()
        if name not in RULE_NAMES:
            raise DedupeError(f"unknown keeper rule {part!r}: use {', '.join(RULE_NAMES[:-1])} or path:FOLDER")
        if name == "path":
            if not sep or not arg.strip():
                raise DedupeError("the path rule needs a folder, e.g. path:/mnt/photos")
            rules.append(KeeperRule("path", os.path.abspath(os.path.expanduser(arg.strip()))))
        elif sep:
            raise DedupeError(f"the keeper rule {name!r} takes no argument")
        else:
            rules.append(KeeperRule(name))
    if not rules:
        raise DedupeError("no keeper rules given")
    return tuple(rules)


DEFAULT_RULES = parse_rules(DEFAULT_RULES_TEXT)


def in_folder(path: str, folder: str) -> bool:
    folder = folder.rstrip(os.sep) or os.sep
    return path == folder or path.startswith(folder if folder.endswith(os.sep) else folder + os.sep)


def _date_value(taken: str | None) -> int | None:
    if not taken:
        return None
    try:
        d = datetime.fromisoformat(taken)
    except ValueError:
        return None
    return d.toordinal() * 86400 + d.hour * 3600 + d.minute * 60 + d.second


def _rule_key(rule: KeeperRule, roots: Sequence[str] = ()) -> Callable[[FileRecord], tuple[int, ...]]:
    """Smaller is better."""
    if rule.name == "resolution":
        return lambda f: (-(f.fingerprint.width * f.fingerprint.height),)
    if rule.name == "metadata":
        return lambda f: (-_metadata(f),)
    if rule.name == "format":
        # Transparency first: a copy that dropped the alpha channel lost something, whatever its format.
        return lambda f: (0 if _transparent(f) else 1, 0 if _camera_format(f) else 1)
    if rule.name == "taken":
        return lambda f: (0, taken) if (taken := _date_value(f.fingerprint.taken)) is not None else (1, 0)
    if rule.name == "order":
        return lambda f: (_named_at(f.path, roots),)
    if rule.name == "size":
        return lambda f: (-f.size,)
    if rule.name == "shortest":
        return lambda f: (len(f.path),)
    if rule.name == "path":
        folder = rule.arg or os.sep
        return lambda f: (0 if in_folder(f.path, folder) else 1,)

    sign = 1 if rule.name == "oldest" else -1

    def by_date(f: FileRecord) -> tuple[int, ...]:
        taken = _date_value(f.fingerprint.taken)
        # A known date taken wins over none; then the date taken, then the file's mtime.
        return (0, sign * taken, sign * f.mtime_ns) if taken is not None else (1, 0, sign * f.mtime_ns)

    return by_date


def _metadata(f: FileRecord) -> int:
    """How much of the camera's own metadata the file carries: the date taken and the camera's make and model."""
    return (f.fingerprint.taken is not None) + (f.fingerprint.camera is not None)


def _transparent(f: FileRecord) -> bool:
    """The picture has partly transparent pixels (it is read two ways: see match.readings)."""
    return len(f.fingerprint.variants) == ALPHA_VARIANTS


def _camera_format(f: FileRecord) -> bool:
    return f.fingerprint.format in CAMERA_FORMATS or is_raw(f)


def _named_at(path: str, roots: Sequence[str]) -> int:
    """The position of the first named folder that holds path; after all of them when none does."""
    return next((i for i, root in enumerate(roots) if in_folder(path, root)), len(roots))


def _describe(rule: KeeperRule, f: FileRecord, roots: Sequence[str] = (), among: Sequence[FileRecord] = ()) -> str:
    """Why f won by this rule, among the candidates that were left before it."""
    fp = f.fingerprint
    if rule.name == "resolution":
        return f"largest resolution ({fp.width}x{fp.height})"
    if rule.name == "metadata":
        held = [what for what, value in (("date taken", fp.taken), ("camera", fp.camera)) if value is not None]
        return f"camera metadata ({' and '.join(held)})" if held else "camera metadata"
    if rule.name == "format" and _transparent(f):
        return f"keeps its transparency ({fp.format})"
    if rule.name == "format":
        return f"camera format ({fp.format.removeprefix(RAW_PREFIX)}) over an export"
    if rule.name == "taken":
        return f"earliest date taken ({fp.taken.replace('T', ' ')})" if fp.taken else "earliest date taken"
    if rule.name == "order":
        at = _named_at(f.path, roots)
        return f"in the folder named first ({roots[at]})" if at < len(roots) else "in a folder named earlier"
    if rule.name == "size":
        return f"largest file ({f.size} bytes)"
    if rule.name == "shortest":
        return "shortest path"
    if rule.name == "name":
        return "first path in alphabetical order"
    if rule.name == "path":
        return f"in preferred folder {rule.arg}"
    # oldest/newest: the date taken when it told the files apart, else the file time that did.
    by_taken = fp.taken and any(c.fingerprint.taken != fp.taken for c in among)
    when = f"taken {fp.taken.replace('T', ' ')}" if by_taken and fp.taken else f"modified {_mtime_text(f.mtime_ns)}"
    return f"{rule.name} ({when})"


def _mtime_text(mtime_ns: int) -> str:
    return datetime.fromtimestamp(mtime_ns / 1e9).strftime("%Y-%m-%d %H:%M:%S")


def choose_keeper(
    group: DuplicateGroup,
    rules: Sequence[KeeperRule] = DEFAULT_RULES,
    references: Sequence[str] = (),
    *,
    roots: Sequence[str] = (),
) -> KeeperChoice:
    """The member to keep. Files in reference folders always win; a tie the rules cannot break is flagged.

    roots: the folders in the order the user named them, for the rule "order" (the first named wins).
    """
    return _choose(sorted((m.file for m in group.members), key=lambda f: f.path), rules, references, roots)


def _choose(
    candidates: list[FileRecord], rules: Sequence[KeeperRule], references: Sequence[str], roots: Sequence[str]
) -> KeeperChoice:
    """choose_keeper among candidates sorted by path."""
    reasons: list[str] = []
    in_refs = [f for f in candidates if any(in_folder(f.path, r) for r in references)]
    if in_refs:
        candidates = in_refs
        reasons.append("in a reference folder")
    for rule in rules:
        if len(candidates) == 1:
            break
        if rule.name == "name":
            narrowed = candidates[:1]
        else:
            key = _rule_key(rule, roots)
            best = min(key(f) for f in candidates)
            narrowed = [f for f in candidates if key(f) == best]
        if len(narrowed) < len(candidates):
            reasons.append(_describe(rule, narrowed[0], roots, candidates))
            candidates = narrowed
    keeper = candidates[0]
    if len(candidates) > 1 and in_refs:
        # Every file in a reference folder is kept anyway: which of them is called the keeper changes nothing.
        return KeeperChoice(keeper, "; ".join(reasons))
    if len(candidates) > 1:
        names = ", ".join(f.path for f in candidates)
        why = f" after {'; '.join(reasons)}" if reasons else ""
        reason = f"tie{why}: the rules cannot choose between {names}"
        return KeeperChoice(keeper, reason, tuple(c.path for c in candidates))
    return KeeperChoice(keeper, "; ".join(reasons) or "the only candidate")


def relation(f: FileRecord, keeper: FileRecord) -> MatchKind:
    if f.content_hash == keeper.content_hash:
        return MatchKind.EXACT
    if f.fingerprint.image_hash == keeper.fingerprint.image_hash:
        return MatchKind.IMAGE
    return MatchKind.NEAR


def keeper_first(group: DuplicateGroup, keeper: FileRecord, rule: MatchRule | None = None) -> DuplicateGroup:
    """The group as seen from the file a plan keeps: the keeper first, then every other member with its relation
    to the keeper (same bytes, same image data, or how near it is), so that what a listing calls the reference is
    what review keeps. A member that matched the group only through another member keeps its plain distance."""
    if group.reference.file.path == keeper.path:
        return group
    rule = rule or DEFAULT_MATCH_RULE
    rest: list[GroupMember] = []
    for m in group.members:
        f = m.file
        if f.path == keeper.path:
            continue
        kind = relation(f, keeper)
        if kind is not MatchKind.NEAR:
            rest.append(GroupMember(f, kind, 0))
        elif (found := match(f.fingerprint, keeper.fingerprint, rule)) is not None:
            rest.append(GroupMember(f, kind, found.distance, found.transform, found.dhash, found.crop))
        else:
            distance, transform = match_distance(f.fingerprint, keeper.fingerprint)
            rest.append(GroupMember(f, kind, distance, transform if rule.rotations else None))
    rest.sort(key=lambda m: (KIND_RANK[m.match], m.distance, m.file.path))
    first = GroupMember(keeper, MatchKind.EXACT, 0)
    weakest = max((m.match for m in rest), key=KIND_RANK.__getitem__)
    return DuplicateGroup(weakest, (first, *rest), group.cropped_paths)


def keepers_first(
    groups: Sequence[DuplicateGroup],
    rules: Sequence[KeeperRule] = DEFAULT_RULES,
    references: Sequence[str] = (),
    *,
    roots: Sequence[str] = (),
    rule: MatchRule | None = None,
    include_raw: bool = False,
) -> list[DuplicateGroup]:
    """Every group with the file a plan would keep (suggest_keeper) first: see keeper_first."""
    chosen = keepers_chosen(groups, rules, references, roots=roots, rule=rule, include_raw=include_raw)
    return [g for g, _ in chosen]


def keepers_chosen(
    groups: Sequence[DuplicateGroup],
    rules: Sequence[KeeperRule] = DEFAULT_RULES,
    references: Sequence[str] = (),
    *,
    roots: Sequence[str] = (),
    rule: MatchRule | None = None,
    include_raw: bool = False,
) -> list[tuple[DuplicateGroup, KeeperChoice]]:
    """keepers_first with each group's KeeperChoice, whose reason says which rules decided."""
    refs = tuple(os.path.abspath(r) for r in references)
    chosen: list[tuple[DuplicateGroup, KeeperChoice]] = []
    for g in groups:
        choice = suggest_keeper(g, rules, refs, include_raw=include_raw, roots=roots)
        chosen.append((keeper_first(g, choice.keeper, rule), choice))
    return chosen


def not_duplicate_pairs(groups: Iterable[DuplicateGroup]) -> list[tuple[str, str]]:
    """The content-hash pairs that remember groups a person kept whole (Store.add_not_duplicates): every two
    members' hashes, and a hash with itself when two members share it."""
    pairs: list[tuple[str, str]] = []
    for group in groups:
        hashes = [m.file.content_hash for m in group.members]
        pairs += [(a, b) for x, a in enumerate(hashes) for b in hashes[x:] if a != b or hashes.count(a) > 1]
    return pairs


# --- planning (pure) ---------------------------------------------------------------------------------------------


def plan(
    groups: Sequence[DuplicateGroup],
    rules: Sequence[KeeperRule] = DEFAULT_RULES,
    action: Action = Action.TRASH,
    *,
    references: Sequence[str] = (),
    destination: str | None = None,
    roots: Sequence[str] = (),
    include_near: bool = True,
    keepers: Mapping[int, str] | None = None,
    include_raw: bool = False,
    match_rule: MatchRule = DEFAULT_MATCH_RULE,
) -> Plan:
    """What to do with each group's redundant copies. Reads no file (it lists the folders of the copies, to show
    their sidecars) and changes nothing.

    references: absolute real folders whose files always win and are never touched. destination: the folder of
    a move. roots: the scanned folders, so that a move keeps paths relative to them. include_near: act on copies
    that are only similar to their keeper. keepers: keeper paths picked by the user, by index into groups.
    include_raw: treat RAW files like any other photo. Without it, a group of a RAW and its developed JPEG(s)
    keeps the best JPEG as its keeper and every RAW beside it ("RAW original kept"); only exact copies of a RAW
    (the same bytes) are removed, in favour of the best RAW. match_rule: the run's rule of what counts as a
    duplicate; a copy that may show another part of the picture than its keeper (the group holds crops) goes only
    when it is a crop of the keeper or a plain near copy of it under this rule, with crops off.
    """
    if action is Action.MOVE and not destination:
        raise DedupeError("a move needs a destination folder (--to DIR)")
    dest = os.path.abspath(destination) if destination else None
    refs = tuple(os.path.abspath(r) for r in references)
    sidecars_of = SidecarFinder()
    planned: list[GroupPlan] = []
    context = _Context(action, refs, dest, roots, include_near, include_raw, rules, match_rule, sidecars_of)
    for i, group in enumerate(groups):
        choice = suggest_keeper(group, rules, refs, include_raw=include_raw, roots=roots)
        picked = (keepers or {}).get(i)
        if picked is not None:
            chosen = next((m.file for m in group.members if m.file.path == picked), None)
            if chosen is None:
                raise DedupeError(f"{picked} is not a member of group {i + 1}")
            if chosen.path != choice.keeper.path or choice.is_tie:
                choice = KeeperChoice(chosen, "chosen by you")
        planned.append(_plan_group(group, choice, context))
    return Plan(action, dest, tuple(planned))


@dataclasses.dataclass(frozen=True, slots=True)
class _Context:
    """What a plan's groups share: the run's choices."""

    action: Action
    refs: Sequence[str]
    dest: str | None
    roots: Sequence[str]
    include_near: bool
    include_raw: bool
    rules: Sequence[KeeperRule]
    match_rule: MatchRule
    sidecars_of: SidecarFinder


RAW_KEPT = "RAW original kept: a RAW is removed only as an exact copy of another RAW (or with --include-raw)"
TWIN_KEPT = "developed twin of the RAW keeper kept: acted on only with --include-raw"


def is_raw(f: FileRecord) -> bool:
    return f.fingerprint.format.startswith(RAW_PREFIX)


def suggest_keeper(
    group: DuplicateGroup,
    rules: Sequence[KeeperRule] = DEFAULT_RULES,
    references: Sequence[str] = (),
    *,
    include_raw: bool = False,
    roots: Sequence[str] = (),
) -> KeeperChoice:
    """The keeper a plan would choose: without include_raw, a JPEG/HEIC twin rather than the RAW beside it."""
    return choose_keeper(group if include_raw else _developed(group), rules, references, roots=roots)


def _developed(group: DuplicateGroup) -> DuplicateGroup:
    """The group's non-RAW members, when it has both kinds: the keeper is chosen among them."""
    developed = tuple(m for m in group.members if not is_raw(m.file))
    if not developed or len(developed) == len(group.members):
        return group
    return DuplicateGroup(group.kind, developed)


def _plan_group(group: DuplicateGroup, choice: KeeperChoice, c: _Context) -> GroupPlan:
    """The steps of one group. Copies of one image (the same bytes, or the same image data with other metadata)
    are always cut to one file, the best of them by the keeper rules, whatever the group's keeper is; copies that
    are only similar go in favour of the group's keeper, and only with include_near. A tie the rules cannot break
    leaves the group's similar copies alone, and copies of one image whose own best is a tie."""
    keeper = choice.keeper
    decided = not choice.is_tie
    steps: list[Step] = []
    left: list[Skipped] = []
    raw_keeper = keeper
    if not c.include_raw and not is_raw(keeper):
        raws = tuple(m for m in group.members if is_raw(m.file))
        if raws:
            # Exact copies of a RAW are still redundant: they go in favour of the best RAW, which itself stays.
            raw_keeper = choose_keeper(DuplicateGroup(group.kind, raws), c.rules, c.refs, roots=c.roots).keeper
    # Crops as the grouping found them, also when the group comes shown from its keeper (see crop_linked).
    cropped = group.cropped_paths
    group = keeper_first(group, keeper, c.match_rule)
    plain = dataclasses.replace(c.match_rule, crops=False)
    image_sets: dict[str, list[FileRecord]] = {}
    for m in sorted(group.members, key=lambda m: m.file.path):
        image_sets.setdefault(m.file.fingerprint.image_hash, []).append(m.file)
    set_choices: dict[str, KeeperChoice] = {}
    for m in group.members:
        f = m.file
        if f.path == keeper.path:
            continue
        k = keeper
        reason = None
        if not c.include_raw:
            if is_raw(f):
                k = raw_keeper
                if f.path == k.path or f.content_hash != k.content_hash:
                    left.append(Skipped(f.path, RAW_KEPT))
                    continue
            elif is_raw(keeper):
                left.append(Skipped(f.path, TWIN_KEPT))
                continue
        image = f.fingerprint.image_hash
        if not decided or (relation(f, k) is MatchKind.NEAR and not c.include_near):
            same = image_sets[image]
            if image not in set_choices:
                set_choices[image] = _choose(same, c.rules, c.refs, c.roots)
            best = set_choices[image]
            if len(same) == 1 or f.path == best.keeper.path:
                held = choice.reason if not decided else f"similar, not identical (distance {m.distance})"
                left.append(Skipped(f.path, f"{held}: acted on only with --include-near or in review"))
                continue
            if best.is_tie:
                left.append(Skipped(f.path, f"{best.reason}; pick the keeper in 'dedupe review' or add a rule"))
                continue
            k = best.keeper
        kind = relation(f, k)
        if any(in_folder(f.path, r) for r in c.refs):
            reason = "in a reference folder: never touched"
        elif (f.dev, f.ino) == (k.dev, k.ino):
            reason = "the keeper's own file (a hard link or another path to it)"
        elif looks_like_a_view(f.dev, f.ino, f.size, f.mtime_ns, k.dev, k.ino, k.size, k.mtime_ns):
            reason = VIEW_REASON
        elif kind is MatchKind.NEAR and (why := _crop_keeps(f, k, bool(cropped & {f.path, k.path}), plain)):
            reason = why
        elif c.action in (Action.HARDLINK, Action.SYMLINK) and kind is not MatchKind.EXACT:
            reason = "not the same bytes as the keeper: a link would lose what differs"
        elif c.action is Action.HARDLINK and f.dev != k.dev:
            reason = "on another file system than the keeper: a hard link is impossible"
        elif c.dest is not None and in_folder(f.path, c.dest):
            reason = "already in the destination folder"
        if reason:
            left.append(Skipped(f.path, reason))
            continue
        target = move_target(f.path, c.dest, c.roots) if c.action is Action.MOVE and c.dest else None
        sidecars = c.sidecars_of(f.path) if c.action in CARRIES_SIDECARS else ()
        steps.append(Step(f, k, c.action, kind, target, sidecars))
    # The heart of the matter: every file a step keeps stays, so a group never loses its last copy.
    gone = {s.file.path for s in steps}
    assert not gone & ({keeper.path, raw_keeper.path} | {s.keeper.path for s in steps})
    assert len(steps) < len(group.members)
    skipped = None
    if not decided:
        skipped = f"{choice.reason}; pick the keeper in 'dedupe review' or add a rule"
    return GroupPlan(group, choice, tuple(steps), tuple(left), skipped)


def _crop_keeps(f: FileRecord, keeper: FileRecord, flagged: bool, plain: MatchRule) -> str | None:
    """Why a near copy must stay because the keeper may not show all of it, or None when it may go.

    A copy of which the keeper is a crop shows more than the keeper, also when the crop is small enough to match
    as a plain near copy. When the copy or the keeper is in the group as a crop (flagged), the copy may only go
    when it is a crop of the keeper or a plain near copy of it: two crops of one picture, both in the group
    through its reference, may show different parts of it. plain: the run's rule with crops off.
    """
    crop = crop_match(f.fingerprint, keeper.fingerprint)
    direction = None if crop is None else crop[2]
    # Unflagged, only a window that fits strictly better one way tells a small crop from a resized copy.
    if direction == WIDER and (flagged or shows_more(f.fingerprint, keeper.fingerprint)):
        return "shows more than its keeper (the keeper is a crop of it): kept"
    if not flagged or direction == CROP:
        return None
    if match(f.fingerprint, keeper.fingerprint, plain) is not None:
        return None
    return "neither a crop nor a copy of its keeper (two crops may show different parts of one picture): kept"


VIEW_REASON = (
    "looks like the keeper's own file seen through another mount (same inode number, size and time on another"
    " device: an overlay, NFS or SMB view): left alone"
)


def looks_like_a_view(
    dev: int, ino: int, size: int, mtime_ns: int, kdev: int, kino: int, ksize: int, kmtime: int
) -> bool:
    """Overlay, NFS and SMB show a file under another device number but its own inode number: acting on one
    path would remove the other. A real copy on another drive almost never has the same inode number and time."""
    return dev != kdev and (ino, size, mtime_ns) == (kino, ksize, kmtime)


def move_target(path: str, dest: str, roots: Sequence[str]) -> str:
    """Where a move puts a file: its path relative to the folder holding its scanned root, under dest."""
    for root in sorted(roots, key=len, reverse=True):
        if in_folder(path, root):
            base = os.path.dirname(root.rstrip(os.sep)) or os.sep
            return os.path.join(dest, os.path.relpath(path, base))
    drive, rest = os.path.splitdrive(path)
    return os.path.join(dest, drive.replace(":", ""), rest.lstrip(os.sep))


__all__ = [
    "DEFAULT_MATCH_RULE",
    "DEFAULT_RULES",
    "DEFAULT_RULES_TEXT",
    "RAW_KEPT",
    "RULE_NAMES",
    "TWIN_KEPT",
    "VIEW_REASON",
    "choose_keeper",
    "in_folder",
    "is_raw",
    "looks_like_a_view",
    "move_target",
    "parse_rules",
    "plan",
    "relation",
    "suggest_keeper",
]
