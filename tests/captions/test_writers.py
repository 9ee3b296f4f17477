"""Writers: WebVTT checked by the W3C validator's parser, SRT by a strict parser, HTML by lxml."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lxml import html as lxml_html

from pipeline.asr.types import Word
from pipeline.captions.profiles import PROFILES
from pipeline.captions.segmenter import Cue, segment
from pipeline.captions.writers import WRITERS, Document, timestamp
from tests.captions.srt import parse_srt


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
    assert result["cues"][0]["text"] == "<v Dana Lee>Welcome everyone."
    assert WRITERS["srt"].render(_doc("Welcome everyone.", speaker="Dana Lee")).split(
        "\n")[2] == "Dana Lee: Welcome everyone."


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
    assert " ".join(cues[0].lines) == "Use <b> & --> arrows & \"quotes\" in R&D."


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
