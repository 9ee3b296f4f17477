"""Cue parsing, rendering and editing: the seam the review page writes captions through."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from pipeline.captions.profiles import get_profile
from pipeline.errors import InputError
from pipeline.review import cues as cuelib
from pipeline.review.cues import Cue
from tests.captions.readback import CONTROL, HOSTILE_TEXTS, ffmpeg_cues
from tests.captions.srt import parse_srt

SAMPLE = [Cue(0.5, 2.0, ("Hello & welcome.",), "Ana"),
          Cue(2.2, 4.0, ("a --> b <script>x</script>", "second line"))]


def test_vtt_round_trip_escapes_markup_and_arrows() -> None:
    text = cuelib.render_vtt(SAMPLE)
    assert "<script>" not in text and "a --&gt; b &lt;script&gt;" in text
    assert text.count("-->") == 2  # only the timing lines
    assert "<v Ana>Ana: Hello &amp; welcome." in text  # the name shown where it changes
    assert cuelib.parse_vtt(text) == SAMPLE


def test_parse_vtt_skips_notes_identifiers_settings_and_markup() -> None:
    text = ("\ufeffWEBVTT - course\n\nNOTE made by hand\n\nSTYLE\n::cue { color: red }\n\n"
            "intro\n00:01.000 --> 00:02.500 align:start\n<i>Hi</i> <c.x>there</c>\n\n"
            "01:00:00.000 --> 01:00:01.000\nLate\n")
    assert cuelib.parse_vtt(text) == [Cue(1.0, 2.5, ("Hi there",)),
                                      Cue(3600.0, 3601.0, ("Late",))]
    with pytest.raises(InputError, match="WEBVTT"):
        cuelib.parse_vtt("1\n00:00:01,000 --> 00:00:02,000\nSRT\n")


def test_srt_txt_html_render_from_edited_cues() -> None:
    srt = cuelib.render_srt(SAMPLE)
    assert "00:00:00,500 --> 00:00:02,000" in srt and "Ana: Hello & welcome." in srt
    txt = cuelib.render_txt(SAMPLE, "Course")
    # a new paragraph where the speaker changes, named where known
    assert txt == ("Course\n\nAna: Hello & welcome.\n\n"
                   "a --> b <script>x</script> second line\n")
    page = cuelib.render_html(SAMPLE, "Course <1>", "en")
    assert "<script>x" not in page and "&lt;script&gt;x&lt;/script&gt;" in page
    assert "<h1>Course &lt;1&gt;</h1>" in page and '<html lang="en">' in page


TALK = [Cue(0.5, 2.0, ("Hello and welcome.",), "Speaker 1"),
        Cue(2.2, 4.0, ("Thanks.",), "Speaker 2"),
        Cue(4.2, 6.0, ("Speaker 2: is a name", "I keep."), "Speaker 2"),
        Cue(6.2, 8.0, ("Back to me.",), "Speaker 1")]


def test_speakers_round_trip_and_show_at_changes() -> None:
    text = cuelib.render_vtt(TALK)
    assert "<v Speaker 2>Speaker 2: Thanks." in text
    assert "<v Speaker 2>Speaker 2: is a name" in text  # no change: the text's own words
    assert cuelib.parse_vtt(text) == TALK
    assert cuelib.speakers(TALK) == ["Speaker 1", "Speaker 2"]
    txt = cuelib.render_txt(TALK, "")
    assert txt.split("\n\n") == ["Speaker 1: Hello and welcome.",
                                  "Speaker 2: Thanks. Speaker 2: is a name I keep.",
                                  "Speaker 1: Back to me.\n"]


def test_rename_is_everywhere_and_reassign_is_one_cue() -> None:
    renamed = cuelib.rename_speaker(TALK, "Speaker 2", "  Ben   Okafor ")
    assert [c.speaker for c in renamed] == ["Speaker 1", "Ben Okafor", "Ben Okafor",
                                            "Speaker 1"]
    assert [c.lines for c in renamed] == [c.lines for c in TALK]
    joined = cuelib.rename_speaker(renamed, "Ben Okafor", "Speaker 1")
    assert cuelib.speakers(joined) == ["Speaker 1"]
    moved = cuelib.reassign(renamed, 2, "Speaker 1")
    assert [c.speaker for c in moved] == ["Speaker 1", "Ben Okafor", "Speaker 1",
                                          "Speaker 1"]
    with pytest.raises(InputError, match="no cue is spoken by 'Nobody'"):
        cuelib.rename_speaker(TALK, "Nobody", "Ana")
    for bad in ("", "A: B", "<v Eve>", "x" * 65):
        with pytest.raises(InputError, match="speaker name"):
            cuelib.rename_speaker(TALK, "Speaker 1", bad)
    with pytest.raises(InputError, match="there is no cue 9"):
        cuelib.reassign(TALK, 8, "Ana")


def test_parse_time_accepts_seconds_and_timestamps() -> None:
    assert cuelib.parse_time("00:01:02.250") == pytest.approx(62.25)
    assert cuelib.parse_time("01:02.250") == pytest.approx(62.25)
    assert cuelib.parse_time("12.5") == 12.5
    for bad in ("soon", "-1", "nan"):
        with pytest.raises(InputError, match="seconds"):
            cuelib.parse_time(bad)


@pytest.mark.parametrize("bad", [
    "inf", "-inf", "Infinity", "nan", "1e309", "1e3", "1" * 300, "1" * 20 + ".5",
    "00:00:" + "0" * 300 + ".000", "0x10", "1_000", "\uff11\uff12", "00:99:00.000",
    "00:00:75.000", "01:02.3456", "25:00:00.000", "86401", "", "  ", "12.34567"])
def test_parse_time_refuses_what_no_caption_file_can_hold(bad: str) -> None:
    """Non-finite, absurdly long or out-of-range times never reach a caption file."""
    with pytest.raises(InputError, match="seconds"):
        cuelib.parse_time(bad)


def test_parse_time_keeps_what_the_page_shows() -> None:
    assert cuelib.parse_time("23:59:59.999") == pytest.approx(86399.999)
    assert cuelib.parse_time("00:00:12,5") == pytest.approx(12.5)
    assert cuelib.parse_time(" 4.1 ") == pytest.approx(4.1)
    assert cuelib.parse_time("86400") == 86400.0


def test_edit_keeps_times_finite_ordered_and_inside_the_media() -> None:
    cues = [Cue(0.0, 2.0, ("one",)), Cue(2.5, 4.0, ("two",))]
    for start, end in ((0.0, math.inf), (math.nan, 1.0), (-1.0, 1.0), (0.0, 1e300)):
        with pytest.raises(InputError, match="seconds"):
            cuelib.edit(cues, 0, text="x", start=start, end=end)
    with pytest.raises(InputError, match="after the end of the media"):
        cuelib.edit(cues, 0, text="x", start=1.0, end=9.0, duration=8.0)
    with pytest.raises(InputError, match="after the end of the media"):
        cuelib.edit(cues, 0, text="x", start=8.9, end=9.0, duration=8.0)
    edited = cuelib.edit(cues, 1, text="x", start=7.0, end=8.2, duration=8.0)  # within slack
    assert edited[1].end == 8.2
    with pytest.raises(InputError, match="seconds"):
        cuelib.check_writable([Cue(0.0, math.inf, ("x",))])
    cuelib.check_writable(cues)


@pytest.mark.parametrize("text", HOSTILE_TEXTS)
def test_edited_text_never_forms_a_timing_line_or_a_cue_break(
        text: str, tmp_path: Path, ffmpeg: str, webvtt_validate: Any) -> None:
    """Whatever a reviewer types, ffmpeg and the W3C parser read back exactly three cues."""
    cues = [Cue(0.5, 2.0, ("before",)), Cue(2.5, 3.0, ("old",)), Cue(5.0, 6.0, ("after",),
                                                                       "Ana")]
    edited = cuelib.edit(cues, 1, text=text, start=3.0, end=4.0)
    vtt, srt = tmp_path / "e.vtt", tmp_path / "e.srt"
    vtt.write_text(cuelib.render_vtt(edited), encoding="utf-8")
    srt.write_text(cuelib.render_srt(edited), encoding="utf-8")
    for path in (vtt, srt):
        assert ffmpeg_cues(ffmpeg, path) == [(0.5, 2.0), (3.0, 4.0), (5.0, 6.0)], \
            path.read_text()
        assert not CONTROL.search(path.read_text(encoding="utf-8")), path.read_text()
    checked = webvtt_validate(vtt)
    assert checked["errors"] == [] and len(checked["cues"]) == 3
    assert [c.start for c in parse_srt(srt.read_text(encoding="utf-8"))] == [0.5, 3.0, 5.0]
    back = cuelib.parse_vtt(vtt.read_text(encoding="utf-8"))
    assert [(c.start, c.end) for c in back] == [(0.5, 2.0), (3.0, 4.0), (5.0, 6.0)]
    assert back[1] == edited[1]  # the VTT round-trips what was saved


def test_edit_split_merge() -> None:
    cues = [Cue(0.0, 2.0, ("one two three four",)), Cue(2.5, 4.0, ("five six",))]
    edited = cuelib.edit(cues, 0, text=" five\n\n  seven ", start=3.0, end=3.5)
    assert edited[1] == Cue(3.0, 3.5, ("five", "seven"))  # re-sorted by start
    with pytest.raises(InputError, match="empty"):
        cuelib.edit(cues, 0, text="  \n ", start=0, end=1)
    with pytest.raises(InputError, match="after the start"):
        cuelib.edit(cues, 0, text="x", start=2, end=1)
    first, second, rest = cuelib.split(cues, 0, 1, 42)
    assert (first.text, second.text) == ("one", "two three four")
    assert first.start == 0.0 and second.end == 2.0 and first.end == second.start
    assert 0.2 < first.end < 0.6  # shared by characters: 3 of 18
    assert rest == cues[1]
    with pytest.raises(InputError, match="between 1 and 3"):
        cuelib.split(cues, 0, 4, 42)
    [merged] = cuelib.merge(cues, 0, 12)
    assert merged.start == 0.0 and merged.end == 4.0
    assert merged.lines == ("one two", "three four", "five six")
    with pytest.raises(InputError, match="last cue"):
        cuelib.merge(cues, 1, 42)
    with pytest.raises(InputError, match="no cue 9"):
        cuelib.merge(cues, 8, 42)


def test_word_edit_distance() -> None:
    d = cuelib.word_edit_distance
    assert d(["the", "cat", "sat"], ["the", "cat", "sat"]) == 0
    assert d(["the", "cat", "sat"], ["the", "dog", "sat", "down"]) == 2
    assert d([], ["a", "b"]) == 2 and d(["a", "b", "c"], []) == 3


def test_checks_flag_each_profile_limit() -> None:
    profile = get_profile("learncast")
    cues = [Cue(0.0, 0.5, ("x" * 50,)),                     # long line, short, fast
            Cue(0.45, 9.0, ("a", "b", "c")),                 # overlap before, 3 lines, long
            Cue(9.05, 11.0, ("fine",))]                      # gap too small before it
    rules = {(i["cue"], i["rule"]) for i in cuelib.check_cues(cues, profile)}
    assert {(1, "chars_per_line"), (1, "cps"), (1, "min_duration"), (1, "overlap"),
            (2, "lines"), (2, "max_duration"), (2, "min_gap")} <= rules
    assert not any(cue == 3 for cue, _ in rules)


def test_word_edit_distance_matches_the_textbook_recurrence() -> None:
    import random

    def reference(a: list[str], b: list[str]) -> int:
        previous = list(range(len(b) + 1))
        for i, x in enumerate(a, 1):
            current = [i]
            for j, y in enumerate(b, 1):
                current.append(min(previous[j] + 1, current[j - 1] + 1,
                                   previous[j - 1] + (x != y)))
            previous = current
        return previous[-1]

    rng = random.Random(7)
    for _ in range(300):
        a = [rng.choice("abcd") for _ in range(rng.randint(0, 12))]
        b = [rng.choice("abcd") for _ in range(rng.randint(0, 12))]
        assert cuelib.word_edit_distance(a, b) == reference(a, b), (a, b)
