"""Caption and transcript writers: WebVTT, SRT, plain text, accessible HTML, JSON.

Like whisper's `utils.py`, the formats are small classes differing in a few attributes and a
render method, listed in a plain registry. Each returns text; the caption stage writes it
atomically.
"""

from __future__ import annotations

import html
import json
import unicodedata
from dataclasses import dataclass, field
from typing import Any, ClassVar

from pipeline.artifacts import Artifact
from pipeline.asr.types import Word
from pipeline.captions.segmenter import Cue
from pipeline.captions.speakers import starts_turn

PARAGRAPH_PAUSE_S = 2.0
PARAGRAPH_MAX_WORDS = 120


@dataclass(frozen=True)
class Document:
    """Everything a writer may need; times already shifted to the deliverable's timeline."""

    title: str
    language: str
    cues: list[Cue]
    words: list[Word]
    info: dict[str, Any] = field(default_factory=dict)


def timestamp(seconds: float, marker: str = ".", always_hours: bool = True) -> str:
    ms = max(0, round(seconds * 1000))
    hours, ms = divmod(ms, 3_600_000)
    minutes, ms = divmod(ms, 60_000)
    secs, ms = divmod(ms, 1000)
    head = f"{hours:02d}:" if always_hours or hours else ""
    return f"{head}{minutes:02d}:{secs:02d}{marker}{ms:03d}"


def caption_line(text: str) -> str:
    """One line of cue text that cannot end or split a cue in any caption format.

    Recogniser output and reviewers' typing may hold line breaks (also U+2028, NEL, VT...) and
    control characters (NUL, ESC); a line break inside a cue's text is a blank-line cue break
    in WebVTT and SRT, and control bytes reach players and terminals. Whitespace of any kind
    becomes one space; other control characters and lone surrogates are dropped.
    """
    words = ("".join(ch for ch in word if unicodedata.category(ch) not in ("Cc", "Cs"))
             for word in text.split())
    return " ".join(w for w in words if w)


def caption_lines(lines: tuple[str, ...] | list[str]) -> list[str]:
    """The non-empty `caption_line`s of a cue (an empty one would be a cue break)."""
    return [line for line in map(caption_line, lines) if line]


def speaker_texts(groups: list[tuple[str | None, str]]) -> list[str]:
    """Each paragraph's text, with `Name: ` where the speaker changes."""
    return [f"{who}: {text}" if who and (k == 0 or groups[k - 1][0] != who) else text
            for k, (who, text) in enumerate(groups)]


def shown_cues(cues: list[Cue]) -> list[Cue]:
    """Cues with text left to show: an empty cue would be a malformed SRT block."""
    return [cue for cue in cues if caption_lines(cue.lines)]


def paragraphs(words: list[Word]) -> list[list[Word]]:
    """Group words into paragraphs at long pauses, changes of speaker, or sentence ends of
    long runs."""
    out: list[list[Word]] = []
    current: list[Word] = []
    for w in words:
        if current and (w.start - current[-1].end >= PARAGRAPH_PAUSE_S
                        or w.speaker != current[-1].speaker or (
                len(current) >= PARAGRAPH_MAX_WORDS
                and current[-1].text.endswith((".", "?", "!")))):
            out.append(current)
            current = []
        current.append(w)
    if current:
        out.append(current)
    return out


class Writer:
    suffix: ClassVar[str]
    media_type: ClassVar[str]

    def render(self, doc: Document) -> str:
        raise NotImplementedError


class WebVTT(Writer):
    suffix = "vtt"
    media_type = "text/vtt"

    @staticmethod
    def escape(text: str) -> str:
        # '&', '<' and '>' must be escaped; escaping '>' also rules out a '-->' in cue text.
        return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")

    def render(self, doc: Document) -> str:
        out = ["WEBVTT", ""]
        cues = shown_cues(doc.cues)
        for k, cue in enumerate(cues, 1):
            lines = [self.escape(line) for line in caption_lines(cue.lines)]
            speaker = caption_line(cue.speaker or "")
            if speaker:
                # The voice on every cue; the name shown where the speaker changes (browsers
                # do not display the voice's name).
                shown = f"{self.escape(speaker)}: " if starts_turn(cues, k - 1) else ""
                lines[0] = f"<v {self.escape(speaker)}>{shown}{lines[0]}"
            out += [str(k), f"{timestamp(cue.start)} --> {timestamp(cue.end)}", *lines, ""]
        return "\n".join(out)


class SubRip(Writer):
    suffix = "srt"
    media_type = "application/x-subrip"

    @staticmethod
    def escape(text: str) -> str:
        # SubRip has no escapes, and ffmpeg starts a new cue at any line holding a timing
        # line: `-->` is written `->` (as whisper does), also inside longer arrows.
        while "-->" in text:
            text = text.replace("-->", "->")
        return text

    def render(self, doc: Document) -> str:
        out: list[str] = []
        cues = shown_cues(doc.cues)
        for k, cue in enumerate(cues, 1):
            lines = [self.escape(line) for line in caption_lines(cue.lines)]
            speaker = caption_line(cue.speaker or "")
            if speaker and starts_turn(cues, k - 1):
                lines[0] = f"{self.escape(speaker)}: {lines[0]}"
            out += [str(k), f"{timestamp(cue.start, ',')} --> {timestamp(cue.end, ',')}",
                    *lines, ""]
        return "\n".join(out)


def transcript_text(title: str, paras: list[str]) -> str:
    head = [title, ""] if title else []
    return "\n".join([*head, "\n\n".join(paras)]) + "\n"


def transcript_html(title: str, language: str, paras: list[tuple[float, str]]) -> str:
    """A standalone, accessible transcript page: landmarks, a heading, timestamped paragraphs.

    Shared by the caption stage (paragraphs from recognised words) and the review page
    (paragraphs from edited cues).
    """
    esc = html.escape
    title = title or "Transcript"
    body = [f'<p id="t{round(start * 1000)}"><time datetime="PT{start:.3f}S">'
            f"{esc(timestamp(start, '.', always_hours=False)[:-4])}</time> {esc(text)}</p>"
            for start, text in paras]
    if not body:
        body.append("<p>No speech was recognised in this recording.</p>")
    return "\n".join([
        "<!DOCTYPE html>",
        f'<html lang="{esc(language or "en")}">',
        "<head>",
        '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>Transcript: {esc(title)}</title>",
        "<style>body{font:1.1rem/1.6 system-ui,sans-serif;max-width:42rem;margin:2rem auto;"
        "padding:0 1rem}time{color:#444;font-variant-numeric:tabular-nums;"
        "margin-right:.5rem}</style>",
        "</head>",
        "<body>",
        "<main>",
        "<article>",
        f"<h1>{esc(title)}</h1>",
        '<section aria-label="Transcript">',
        *body,
        "</section>",
        "</article>",
        "</main>",
        "</body>",
        "</html>",
        "",
    ])


class PlainText(Writer):
    suffix = "txt"
    media_type = "text/plain"

    def render(self, doc: Document) -> str:
        paras = paragraphs(doc.words)
        return transcript_text(doc.title, speaker_texts(
            [(p[0].speaker, " ".join(w.text for w in p)) for p in paras]))


class HtmlTranscript(Writer):
    suffix = "html"
    media_type = "text/html"

    def render(self, doc: Document) -> str:
        paras = paragraphs(doc.words)
        texts = speaker_texts([(p[0].speaker, " ".join(w.text for w in p)) for p in paras])
        return transcript_html(doc.title, doc.language,
                               [(p[0].start, text) for p, text in zip(paras, texts, strict=True)])


class JsonTranscript(Writer):
    suffix = "json"
    media_type = "application/json"

    def render(self, doc: Document) -> str:
        data = {
            "title": doc.title,
            "language": doc.language,
            **doc.info,
            "words": [w.to_dict() for w in doc.words],
            "cues": [{"start": c.start, "end": c.end, "text": c.text, "lines": list(c.lines),
                      **({"speaker": c.speaker} if c.speaker else {})} for c in doc.cues],
        }
        return json.dumps(data, ensure_ascii=False, indent=1) + "\n"


#: Writer registry: the artifact each writer makes (its value is also the file suffix).
WRITERS: dict[Artifact, Writer] = {
    Artifact.VTT: WebVTT(),
    Artifact.SRT: SubRip(),
    Artifact.TXT: PlainText(),
    Artifact.HTML: HtmlTranscript(),
    Artifact.WORDS: JsonTranscript(),
}
