"""Soundbites chosen from the transcript (whole sentences, in bounds, dense in key terms) or
given in the sidecar (recording time, through the Timeline)."""

from __future__ import annotations

import itertools

import pytest

from pipeline.artifacts import Timeline
from pipeline.sidecar import SoundbiteSpec
from pipeline.text.highlights import choose, clip_title, plan
from pipeline.text.terms import key_terms
from pipeline.text.words import sentences
from tests.text.talk import BUDGET, FEEDBACK, KUBERNETES, say

FILLER = ["We will get to that in a moment, so stay with us for now.",
          "There is a lot to say and not much time to say it in.",
          "Before we start, a few words about how this all came about.",
          "It has been a busy few weeks for all of us here at the office."]


def test_chosen_spans_are_whole_sentences_within_bounds_and_do_not_overlap() -> None:
    words = say(FILLER + KUBERNETES + FEEDBACK + FILLER + BUDGET)
    sents = sentences(words)
    duration = words[-1].end + 0.5
    spans = choose(sents, key_terms(sents), count=3, min_s=15, max_s=60, duration_s=duration)
    assert len(spans) == 3
    starts = {s.start for s in sents}
    ends = {s.end for s in sents}
    for span in spans:
        assert 15 <= span.duration <= 60
        first = min((s for s in sents if s.start >= span.start), key=lambda s: s.start)
        last = max((s for s in sents if s.end <= span.end), key=lambda s: s.end)
        assert first.start in starts and last.end in ends
        assert first.start - span.start <= 0.25 + 1e-9  # a little air, never a word
        # no word of the neighbouring sentences is inside the span
        assert not [w for w in words if w.start < span.start < w.end]
        assert not [w for w in words if w.start < span.end < w.end]
    ordered = sorted(spans, key=lambda s: s.start)
    assert all(a.end <= b.start for a, b in itertools.pairwise(ordered))
    # dense in key terms: the filler is never the best clip
    best = spans[0]
    said = " ".join(w.text for w in words if best.start <= w.start < best.end)
    assert "we will get to that" not in said.lower()
    assert best.terms and best.title == clip_title(best.title)


def test_short_episodes_get_no_soundbite() -> None:
    words = say(KUBERNETES[:2])
    sents = sentences(words)
    assert choose(sents, key_terms(sents), count=3, min_s=15, max_s=60,
                  duration_s=words[-1].end) == []


def test_titles_are_cut_at_a_word() -> None:
    assert clip_title("Short one.") == "Short one."
    long = clip_title("Kubernetes runs your containers on a cluster of machines, and more "
                      "besides that")
    assert long.endswith("…") and len(long) <= 60 and " " in long
    assert not long[:-1].endswith(" ")


def test_sidecar_soundbites_are_placed_through_the_timeline() -> None:
    words = say(KUBERNETES, start=0.0)
    timeline = Timeline(source_duration_s=100.0, kept=((2.0, 40.0), (50.0, 100.0)),
                        intro_s=3.0)
    specs = [SoundbiteSpec(start=10, duration=20, title="Pods"),
             SoundbiteSpec(start="0:52", duration=15),
             SoundbiteSpec(start=41, duration=5)]  # entirely inside the cut
    got = plan(specs, words, timeline, count=3, min_s=15, max_s=60)
    assert [(p.content_start, p.duration, p.origin) for p in got] == [
        (8.0, 20.0, "sidecar"), (40.0, 15.0, "sidecar")]
    assert got[0].title == "Pods"
    assert got[1].title  # taken from what is said there
    # a span across the cut loses what was cut
    across = plan([SoundbiteSpec(start=35, duration=20)], words, timeline, count=3, min_s=15,
                  max_s=60)
    assert across[0].duration == pytest.approx(10.0)


def test_without_sidecar_soundbites_they_are_chosen_and_count_zero_means_none() -> None:
    words = say(KUBERNETES + FEEDBACK)
    timeline = Timeline.untrimmed(words[-1].end + 1)
    assert len(plan([], words, timeline, count=2, min_s=15, max_s=60)) == 2
    assert plan([], words, timeline, count=0, min_s=15, max_s=60) == []
