"""The interactive review's decisions, one group at a time, without a terminal.

The caller shows `current`, asks the person, hands the answer to `answer` and shows what it returns, until `done`.
Then `plan` gives what to do with the groups decided, and `not_duplicate_pairs` what to remember.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from dedupe.match import MatchRule
from dedupe.models import Action, DuplicateGroup, KeeperChoice, KeeperRule, Plan
from dedupe.plan import DEFAULT_MATCH_RULE, keeper_first, not_duplicate_pairs, plan, suggest_keeper

KEYS = "k keep suggestion · 1-{n} keep that file · a keep all · s skip · o open · b back · q quit"


class Reply(StrEnum):
    MOVED = "moved"  # the review is on another group now (or done): show it
    OPEN = "open"  # open the current group's files in a viewer, then ask again
    NOT_UNDERSTOOD = "not understood"  # show the hint, then ask again
    NOTE = "note"  # understood, but nothing to do: show the hint, then ask again


@dataclass(frozen=True, slots=True)
class Answered:
    reply: Reply
    hint: str = ""
    paths: tuple[str, ...] = ()  # with OPEN: the files to open


class Review:
    """Which keeper, if any, the person chose for each group; answers as in KEYS."""

    def __init__(
        self,
        groups: Sequence[DuplicateGroup],
        rules: Sequence[KeeperRule],
        references: Sequence[str] = (),
        *,
        include_raw: bool = False,
        roots: Sequence[str] = (),
        rule: MatchRule = DEFAULT_MATCH_RULE,
    ) -> None:
        self.rules = tuple(rules)
        self.references = tuple(references)
        self.include_raw = include_raw
        self.rule = rule
        self.choices = [suggest_keeper(g, rules, references, include_raw=include_raw, roots=roots) for g in groups]
        # Each group is shown from the file it would keep (see keeper_first).
        self.groups = [keeper_first(g, c.keeper, rule) for g, c in zip(groups, self.choices, strict=True)]
        self.index = 0
        self.keepers: dict[int, str] = {}  # group index -> the path to keep
        self.keep_all: set[int] = set()  # group indexes that are not duplicates
        self.skipped: set[int] = set()  # group indexes passed over with s
        self.quit_early = False

    @property
    def done(self) -> bool:
        return self.quit_early or self.index >= len(self.groups)

    @property
    def current(self) -> tuple[DuplicateGroup, KeeperChoice]:
        return self.groups[self.index], self.choices[self.index]

    def keys(self) -> str:
        """The prompt for the current group."""
        return KEYS.format(n=len(self.groups[self.index].members))

    def default(self) -> str:
        """The answer an empty line stands for: the suggestion, unless the keeper is a tie."""
        return "" if self.choices[self.index].is_tie else "k"

    def suggested(self) -> int:
        """The number (from 1) of the suggested keeper in the current group."""
        group, choice = self.current
        return next(j for j, m in enumerate(group.members, 1) if m.file.path == choice.keeper.path)

    def answer(self, text: str) -> Answered:
        group, choice = self.current
        i = self.index
        answer = text.strip().lower()
        if answer == "k" and not choice.is_tie:
            self._forget(i)
            self.keepers[i] = choice.keeper.path
        # isdecimal, not isdigit: "²" (AltGr+2 on many keyboards) is a digit that int() refuses, as it refuses
        # more than 4,300 digits.
        elif answer.isdecimal() and len(answer) <= 6 and 1 <= int(answer) <= len(group.members):
            self._forget(i)
            self.keepers[i] = group.members[int(answer) - 1].file.path
        elif answer == "a":
            self._forget(i)
            self.keep_all.add(i)
        elif answer == "s":
            self._forget(i)
            self.skipped.add(i)
        elif answer == "o":
            return Answered(Reply.OPEN, paths=tuple(m.file.path for m in group.members))
        elif answer == "b":
            if i == 0:
                return Answered(Reply.NOTE, "this is the first group: there is nothing before it")
            self.index = i - 1
            return Answered(Reply.MOVED)
        elif answer == "q":
            self.quit_early = True
            return Answered(Reply.MOVED)
        else:
            hint = "a tie: pick the keeper by number" if answer == "k" else f"not an answer: {answer!r}"
            return Answered(Reply.NOT_UNDERSTOOD, hint)
        self.index += 1
        return Answered(Reply.MOVED)

    def _forget(self, i: int) -> None:
        self.keepers.pop(i, None)
        self.keep_all.discard(i)
        self.skipped.discard(i)

    def decision(self) -> str | None:
        """What was answered for the current group before (it was gone back to), or None."""
        i = self.index
        if i in self.keepers:
            group = self.groups[i]
            n = next(j for j, m in enumerate(group.members, 1) if m.file.path == self.keepers[i])
            return f"keep {n} ({self.keepers[i]}), the rest go"
        if i in self.keep_all:
            return "keep all: not duplicates"
        if i in self.skipped:
            return "skipped"
        return None

    @property
    def decided(self) -> bool:
        return bool(self.keepers or self.keep_all)

    def plan(self, action: Action, *, destination: str | None = None, roots: Sequence[str] = ()) -> Plan:
        """What to do with the groups whose keeper was chosen (similar copies included: the person saw them)."""
        chosen = sorted(self.keepers)
        return plan(
            [self.groups[j] for j in chosen],
            self.rules,
            action,
            references=self.references,
            destination=destination,
            roots=roots,
            include_near=True,
            keepers={n: self.keepers[j] for n, j in enumerate(chosen)},
            include_raw=self.include_raw,
            match_rule=self.rule,
        )

    def planned_numbers(self) -> list[int]:
        """The group numbers (from 1, as shown) of the groups plan() covers, in its order."""
        return [j + 1 for j in sorted(self.keepers)]

    def not_duplicate_pairs(self) -> list[tuple[str, str]]:
        """The content-hash pairs of the groups kept whole, for Store.add_not_duplicates."""
        return not_duplicate_pairs(self.groups[j] for j in sorted(self.keep_all))
