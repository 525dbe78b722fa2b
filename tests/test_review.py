"""The interactive review's decisions, driven by answers as text: no terminal, no click, no rich."""

from __future__ import annotations

import pytest

from dedupe import Action, DuplicateGroup, MatchRule, find_groups, parse_rules
from dedupe.review import Reply, Review
from tests.conftest import make_record


def three_groups() -> list[DuplicateGroup]:
    """Three exact groups of two files: /a/N.jpg (the shorter path, suggested) and /copies/N.jpg."""
    records = [
        make_record(f"{folder}/{n}.jpg", ino=k, content_hash=f"{n}" * 32, image_hash=f"{n}" * 32, phash=n << 40)
        for n in range(3)
        for k, folder in enumerate(("/a", "/copies"), start=2 * n)
    ]
    groups = find_groups(records, MatchRule(0))  # identical pictures only: the groups are the content hashes
    assert len(groups) == 3
    return groups


def review() -> Review:
    return Review(three_groups(), parse_rules("shortest"))


def test_keeping_the_suggestion_moves_on_and_decides_the_group() -> None:
    r = review()
    assert r.default() == "k" and r.current[1].keeper.path == "/a/0.jpg" and r.suggested() == 1
    assert r.answer("k").reply is Reply.MOVED
    assert r.index == 1 and r.keepers == {0: "/a/0.jpg"} and r.decided


def test_a_number_keeps_that_file_and_a_keeps_the_whole_group() -> None:
    r = review()
    second = r.current[0].members[1].file.path
    r.answer(" 2 ")
    r.answer("a")
    assert r.keepers == {0: second} and r.keep_all == {1}
    r.answer("s")
    assert r.done and not r.quit_early
    the_plan = r.plan(Action.TRASH)
    assert [g.choice.keeper.path for g in the_plan.groups] == [second]
    assert [s.file.path for s in the_plan.steps] == [p for p in ("/a/0.jpg", "/copies/0.jpg") if p != second]
    hashes = {m.file.content_hash for m in r.groups[1].members}
    assert set(r.not_duplicate_pairs()) == {(h, h) for h in hashes}


def test_back_returns_to_the_previous_group_and_a_new_answer_replaces_the_old() -> None:
    r = review()
    r.answer("a")
    assert r.answer("b").reply is Reply.MOVED and r.index == 0
    r.answer("k")
    assert r.keep_all == set() and r.keepers == {0: "/a/0.jpg"}
    r.answer("b")
    r.answer("b")
    assert r.index == 0  # never before the first group


def test_open_and_unknown_answers_stay_on_the_group() -> None:
    r = review()
    opened = r.answer("o")
    assert opened.reply is Reply.OPEN and opened.paths == ("/a/0.jpg", "/copies/0.jpg")
    wrong = r.answer("9")
    assert wrong.reply is Reply.NOT_UNDERSTOOD and wrong.hint == "not an answer: '9'"
    assert r.index == 0 and not r.decided


@pytest.mark.parametrize("answer", ["²", "1" * 5000], ids=["superscript-two", "thousands-of-digits"])
def test_a_number_int_cannot_read_is_not_an_answer(answer: str) -> None:
    """An answer that str.isdigit() takes but int() refuses (a superscript, thousands of digits) is not
    understood, and the review stays on the group."""
    r = review()
    assert r.answer(answer).reply is Reply.NOT_UNDERSTOOD
    assert r.index == 0 and not r.decided


def test_quit_ends_the_review_with_what_was_decided() -> None:
    r = review()
    r.answer("k")
    r.answer("q")
    assert r.done and r.quit_early and r.keepers == {0: "/a/0.jpg"}
    assert [s.file.path for s in r.plan(Action.DELETE).steps] == ["/copies/0.jpg"]


@pytest.mark.parametrize("answer", ["k", "K", ""])
def test_a_tie_needs_a_number(answer: str) -> None:
    groups = find_groups([make_record(p, ino=k, content_hash="e" * 32) for k, p in enumerate(("/x/a.jpg", "/y/b.jpg"))])
    r = Review(groups, parse_rules("shortest"))
    assert r.current[1].is_tie and r.default() == ""
    answered = r.answer(answer)
    assert answered.reply is Reply.NOT_UNDERSTOOD and r.index == 0
    assert answered.hint == ("a tie: pick the keeper by number" if answer else "not an answer: ''")
    r.answer("2")
    assert r.keepers == {0: "/y/b.jpg"}


def test_the_prompt_counts_the_members_of_the_group() -> None:
    assert review().keys().startswith("k keep suggestion · 1-2 keep that file")


def test_back_at_the_first_group_says_there_is_nothing_before_it_and_back_shows_the_answer() -> None:
    r = review()
    answered = r.answer("b")
    assert answered.reply is Reply.NOTE and "nothing before it" in answered.hint and r.index == 0
    r.answer("s")
    r.answer("b")
    assert r.index == 0 and r.decision() == "skipped"
    r.answer("a")
    r.answer("b")
    assert r.decision() == "keep all: not duplicates"
    r.answer("2")
    assert r.index == 1 and r.decision() is None
    r.answer("b")
    assert r.decision() == "keep 2 (/copies/0.jpg), the rest go"
