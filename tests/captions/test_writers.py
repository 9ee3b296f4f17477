"""Writers: WebVTT checked by the W3C validator's parser, SRT by a strict parser, HTML by lxml."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from lxml import html as lxml_html

from pipeline.asr.types import Word
from pipeline.captions.profiles import PROFILES
from pipeline.captions.segmenter import Cue, segment
from pipeline.captions.writers import WRITERS, Document, paragraphs, timestamp
from tests.captions.readback import CONTROL, HOSTILE_TEXTS, ffmpeg_cues
from tests.captions.srt import parse_srt
from tests.review.browser import axe_violations


def _doc(text: str = "Use <b> & --> arrows & \"quotes\" in R&D.", speaker: str | None = None,
         start: float = 3725.5) -> Document:
    words = [Word(t, start + i * 0.4, start + i * 0.4 + 0.3, 0.9)
             for i, t in enumerate(text.split())]
    cues = segment(words, PROFILES["learncast"])
    if speaker:
        cues = [Cue(c.start, c.end, c.lines, speaker, c.words) for c in cues]
    return Document(title="R&D <Update>", language="en-GB", cues=cues, words=words,
                    info={"engine": "openai-whisper"})


def test_timestamps() -> None:
    assert timestamp(3725.5) == "01:02:05.500"
    assert timestamp(59.9996) == "00:01:00.000"
    assert timestamp(1.25, ",") == "00:00:01,250"
    assert timestamp(61.0, always_hours=False) == "01:01.000"


def test_vtt_escapes_markup_and_passes_the_validator(tmp_path: Path,
                                                    webvtt_validate: Any) -> None:
    path = tmp_path / "x.vtt"
    path.write_text(WRITERS["vtt"].render(_doc()), encoding="utf-8")
    result = webvtt_validate(path)
    assert result["errors"] == []
    assert [c["text"] for c in result["cues"]] == [
        "Use &lt;b&gt; &amp; --&gt; arrows &amp; \"quotes\" in R&amp;D."]
    assert result["cues"][0]["start"] == 3725.5


def test_vtt_voice_spans_when_speakers_are_known(tmp_path: Path, webvtt_validate: Any) -> None:
    path = tmp_path / "v.vtt"
    path.write_text(WRITERS["vtt"].render(_doc("Welcome everyone.", speaker="Dana Lee")))
    result = webvtt_validate(path)
    assert result["errors"] == []
    # the voice for players, the name shown because browsers do not display the voice
    assert result["cues"][0]["text"] == "<v Dana Lee>Dana Lee: Welcome everyone."
    assert WRITERS["srt"].render(_doc("Welcome everyone.", speaker="Dana Lee")).split(
        "\n")[2] == "Dana Lee: Welcome everyone."


def _conversation() -> Document:
    said = [("Ana", "Hello and welcome."), ("Ana", "Today we talk budgets."),
            ("Ben", "Thanks, Ana."), ("Ana", "So, Ben,"), ("Ana", "where do we start?")]
    words, cues = [], []
    for k, (who, text) in enumerate(said):
        start = 1.0 + 2 * k
        group = [Word(t, start + i * 0.4, start + i * 0.4 + 0.3, 0.9, speaker=who)
                 for i, t in enumerate(text.split())]
        words += group
        cues.append(Cue(start, start + 1.8, (text,), who, tuple(group)))
    return Document(title="Budgets", language="en", cues=cues, words=words)


def test_names_appear_where_the_speaker_changes(tmp_path: Path,
                                                webvtt_validate: Any) -> None:
    doc = _conversation()
    vtt = WRITERS["vtt"].render(doc)
    path = tmp_path / "talk.vtt"
    path.write_text(vtt)
    texts = [c["text"] for c in webvtt_validate(path)["cues"]]
    assert texts == ["<v Ana>Ana: Hello and welcome.", "<v Ana>Today we talk budgets.",
                     "<v Ben>Ben: Thanks, Ana.", "<v Ana>Ana: So, Ben,",
                     "<v Ana>where do we start?"]
    srt = [c.lines[0] for c in parse_srt(WRITERS["srt"].render(doc))]
    assert srt == ["Ana: Hello and welcome.", "Today we talk budgets.", "Ben: Thanks, Ana.",
                   "Ana: So, Ben,", "where do we start?"]
    txt = WRITERS["txt"].render(doc)
    assert txt.split("\n\n")[1:] == ["Ana: Hello and welcome. Today we talk budgets.",
                                      "Ben: Thanks, Ana.", "Ana: So, Ben, where do we start?\n"]
    page = lxml_html.fromstring(WRITERS["html"].render(doc).encode())
    paras = [p.text_content() for p in page.xpath("//section/p")]
    assert [p.split(" ", 1)[1] for p in paras] == ["Ana: Hello and welcome. Today we talk "
                                                   "budgets.", "Ben: Thanks, Ana.",
                                                   "Ana: So, Ben, where do we start?"]
    data = json.loads(WRITERS["json"].render(doc))
    assert [w["speaker"] for w in data["words"][:3]] == ["Ana"] * 3
    assert [c["speaker"] for c in data["cues"]] == ["Ana", "Ana", "Ben", "Ana", "Ana"]


def test_validator_catches_broken_files(tmp_path: Path, webvtt_validate: Any) -> None:
    """The validator is strict: guard against a test that cannot fail."""
    bad = tmp_path / "bad.vtt"
    bad.write_text("WEBVTT\n\n00:00:02.000 --> 00:00:01.000\nbackwards\n\n"
                   "00:00:01.000 -> 00:00:03.000\nbroken arrow\n")
    assert len(webvtt_validate(bad)["errors"]) >= 1


def test_srt_is_strict_and_keeps_text_raw() -> None:
    cues = parse_srt(WRITERS["srt"].render(_doc()))
    assert len(cues) == 1 and cues[0].index == 1
    assert cues[0].start == 3725.5
    # SubRip has no escapes: an arrow in the text is written `->` so it is never a timing line
    assert " ".join(cues[0].lines) == "Use <b> & -> arrows & \"quotes\" in R&D."


@pytest.mark.parametrize("text", HOSTILE_TEXTS)
def test_recognised_text_never_forms_a_timing_line_or_a_cue_break(
        text: str, tmp_path: Path, ffmpeg: str, webvtt_validate: Any) -> None:
    """Text straight from a recogniser (or a glossary, or a speaker name) is made safe by the
    writers themselves: ffmpeg and the W3C parser read back exactly the cues written."""
    cues = [Cue(0.5, 2.0, ("before",)), Cue(3.0, 4.0, (text, "second line"), text),
            Cue(5.0, 6.0, (text,))]
    doc = Document(title="t", language="en", cues=cues, words=[])
    for name in ("vtt", "srt"):
        path = tmp_path / f"r.{name}"
        path.write_text(WRITERS[name].render(doc), encoding="utf-8")
        assert ffmpeg_cues(ffmpeg, path) == [(0.5, 2.0), (3.0, 4.0), (5.0, 6.0)], \
            path.read_text()
        assert not CONTROL.search(path.read_text(encoding="utf-8")), path.read_text()
    checked = webvtt_validate(tmp_path / "r.vtt")
    assert checked["errors"] == [] and len(checked["cues"]) == 3
    assert [c.start for c in parse_srt((tmp_path / "r.srt").read_text())] == [0.5, 3.0, 5.0]


def test_html_is_accessible_and_escaped() -> None:
    text = WRITERS["html"].render(_doc())
    page = lxml_html.fromstring(text.encode())
    assert page.get("lang") == "en-GB"
    assert page.xpath("//title/text()") == ["Transcript: R&D <Update>"]
    assert page.xpath("//main/article/h1/text()") == ["R&D <Update>"]
    para = page.xpath("//section[@aria-label='Transcript']/p")[0]
    assert para.xpath("time/@datetime") == ["PT3725.500S"]
    assert para.xpath("time/text()") == ["01:02:05"]
    assert "Use <b> & --> arrows" in para.text_content()
    assert text.startswith("<!DOCTYPE html>")


def test_txt_and_json() -> None:
    doc = _doc()
    assert WRITERS["txt"].render(doc) == (
        "R&D <Update>\n\nUse <b> & --> arrows & \"quotes\" in R&D.\n")
    data = json.loads(WRITERS["json"].render(doc))
    assert data["language"] == "en-GB" and data["engine"] == "openai-whisper"
    assert data["words"][0] == {"word": "Use", "start": 3725.5, "end": 3725.8,
                                "probability": 0.9}
    assert data["cues"][0]["lines"] == [c for c in doc.cues[0].lines]


def _said(text: str, start: float, speaker: str | None = None) -> list[Cue]:
    """Cues for `text` said from `start` at 2.5 words/s, 0.5 s between sentences."""
    words, t = [], start
    for token in text.split():
        words.append(Word(token, round(t, 3), round(t + 0.3, 3), 0.9))
        t += 0.9 if token.endswith(".") else 0.4
    cues = segment(words, PROFILES["learncast"], aligned=True)
    return [Cue(c.start, c.end, c.lines, speaker, c.words) for c in cues]


def test_transcript_paragraphs_follow_pauses_and_speakers() -> None:
    """A long pause or a new speaker starts a paragraph (named where the speaker changes); a
    sentence's short pause does not."""
    cues = (_said("Welcome to the course. Today we cover safety.", 1.0, "Ana")
            + _said("First the alarms.", 5.0, "Ana")  # 0.6 s later: same paragraph
            + _said("Thanks Ana. I will start with the exits.", 9.0, "Ben")  # new speaker
            + _said("Any questions so far?", 14.5, "Ben")  # after a 2 s pause
            + _said("None from me.", 17.0, "Ana"))
    paras = paragraphs(cues)
    assert [(p.speaker, p.text) for p in paras] == [
        ("Ana", "Welcome to the course. Today we cover safety. First the alarms."),
        ("Ben", "Thanks Ana. I will start with the exits."),
        (None, "Any questions so far?"),  # the same speaker goes on: not named again
        ("Ana", "None from me."),
    ]
    assert [p.start for p in paras] == [1.0, 9.0, 14.5, 17.0]
    doc = Document(title="Safety", language="en", cues=cues, words=[])
    txt = WRITERS["txt"].render(doc)
    assert txt.split("\n\n")[1:] == ["Ana: Welcome to the course. Today we cover safety. "
                                     "First the alarms.",
                                     "Ben: Thanks Ana. I will start with the exits.",
                                     "Any questions so far?", "Ana: None from me.\n"]
    page = lxml_html.fromstring(WRITERS["html"].render(doc).encode())
    ps = page.xpath("//section[@aria-label='Transcript']/p")
    assert len(ps) == 4
    assert [p.xpath("time/@datetime")[0] for p in ps] == [
        "PT1.000S", "PT9.000S", "PT14.500S", "PT17.000S"]
    assert [p.xpath("string(span[@class='speaker'])") for p in ps] == ["Ana:", "Ben:", "",
                                                                        "Ana:"]


def test_long_runs_of_speech_are_split_at_sentences() -> None:
    """Without long pauses or new speakers, a paragraph still ends at a sentence (and a
    breath) once it is long."""
    sentence = "We repeat this sentence until the paragraph grows long enough."
    cues = _said(" ".join([sentence] * 20), 0.0)
    paras = paragraphs(cues)
    assert 2 <= len(paras) <= 3
    assert all(p.text.endswith("enough.") for p in paras)
    assert all(80 <= len(p.text.split()) <= 150 for p in paras[:-1])


def test_html_transcript_with_speakers_passes_axe(browser: Any, axe_source: str,
                                                  tmp_path: Path) -> None:
    """The paragraphs, times and speaker names keep the page clean for axe-core (WCAG 2.2
    A/AA, serious and critical) in a real browser."""
    cues = (_said("Welcome to the course. Today we cover safety.", 1.0, "Ana")
            + _said("Thanks Ana. I will start with <the> exits & doors.", 9.0, "Ben & Co"))
    path = tmp_path / "t.html"
    path.write_text(WRITERS["html"].render(Document(title="Safety <1>", language="en-GB",
                                                    cues=cues, words=[])), encoding="utf-8")
    page = browser.new_page()
    try:
        page.goto(path.as_uri())
        assert page.locator("section[aria-label=Transcript] p").count() == 2
        assert page.locator(".speaker").all_inner_texts() == ["Ana:", "Ben & Co:"]
        assert axe_violations(page, axe_source) == []
    finally:
        page.close()
