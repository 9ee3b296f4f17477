"""Suggested chapters from topic shifts: sentences, key phrases and TextTiling boundaries on
transcripts whose topics are known."""

from __future__ import annotations

import itertools

from pipeline.text.terms import key_terms, title_for
from pipeline.text.topics import auto_min_chapter_s, suggest
from pipeline.text.words import sentences, stem
from tests.text.talk import BUDGET, FEEDBACK, KUBERNETES, say


def test_sentences_end_at_full_stops_or_long_pauses_and_start_on_a_word() -> None:
    words = say(["One two three.", "Four five", "six seven eight!"], pauses={2: 2.5})
    got = sentences(words)
    assert [s.text for s in got] == ["One two three.", "Four five", "six seven eight!"]
    assert [s.start for s in got] == [words[0].start, words[3].start, words[5].start]
    # an unpunctuated run longer than max_s is cut at its longest pause
    run = say(["a b c d e f", "g h i j k l"], pauses={1: 1.0})
    joined = [type(w)(w.text.rstrip("."), w.start, w.end, w.probability) for w in run]
    assert len(sentences(joined, max_s=3.0)) == 2 and len(sentences(joined)) == 1


def test_stems_count_word_forms_together() -> None:
    assert stem("habits") == stem("habit") == "habit"
    assert stem("copies") == stem("copy") == "copy"
    assert stem("class") == "class"  # no s stripped from -ss


def test_key_terms_are_the_repeated_content_words() -> None:
    terms = key_terms(sentences(say(KUBERNETES)))
    assert set(list(terms)[:3]) == {"pod", "cluster", "container"}
    assert terms["pod"] == 1.0 and "the" not in terms and "every" not in terms


def test_topic_shifts_become_chapters_with_key_phrase_titles() -> None:
    talk = KUBERNETES + FEEDBACK + BUDGET
    words = say(talk)
    sents = sentences(words)
    duration = words[-1].end + 1.0
    topics = suggest(sents, duration)
    shifts = [sents[len(KUBERNETES)].start, sents[len(KUBERNETES) + len(FEEDBACK)].start]
    assert topics[0].start == 0.0
    found = [t.start for t in topics[1:]]
    assert len(found) == 2, topics
    for shift, got in zip(shifts, found, strict=True):
        assert abs(got - shift) <= 1.0, (topics, shifts)
    titles = [t.title.lower() for t in topics]
    assert any(w in titles[0] for w in ("kubernetes", "pod", "cluster", "container")), titles
    assert any(w in titles[1] for w in ("feedback", "manager", "team")), titles
    assert any(w in titles[2] for w in ("budget", "finance", "review")), titles
    assert all(len(t.title) <= 48 for t in topics)


def test_one_topic_or_too_little_talk_gives_no_boundaries() -> None:
    assert suggest(sentences(say(KUBERNETES[:2])), 30.0) == []
    words = say(KUBERNETES * 2)
    topics = suggest(sentences(words), words[-1].end)
    assert len(topics) <= 2  # the same talk twice: at most the repeat is a boundary


def test_chapters_respect_the_minimum_length() -> None:
    words = say(KUBERNETES + FEEDBACK + BUDGET)
    sents = sentences(words)
    topics = suggest(sents, words[-1].end, min_chapter_s=60.0)
    starts = [t.start for t in topics]
    assert all(b - a >= 60.0 for a, b in itertools.pairwise(starts))
    assert auto_min_chapter_s(3600) == 240.0 and auto_min_chapter_s(30) == 5.0


def test_a_title_prefers_what_this_part_says_and_the_others_do_not() -> None:
    k, f = sentences(say(KUBERNETES)), sentences(say(FEEDBACK))
    assert title_for(f, [k]).lower() != title_for(k, [f]).lower()
    assert title_for([], [k]) == ""
