"""Caption and transcript writers: WebVTT, SRT, plain text, accessible HTML, JSON.

Like whisper's `utils.py`, the formats are small classes differing in a few attributes and a
render method, listed in a plain registry. Each returns text; the caption stage writes it
atomically.
"""

from __future__ import annotations

import html
import json
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, NamedTuple

from pipeline.artifacts import Artifact
from pipeline.asr.types import Word
from pipeline.captions.segmenter import Cue, ends_sentence
from pipeline.captions.speakers import starts_turn

#: A pause this long starts a new paragraph of the TXT/HTML transcript (so does a new speaker).
PARAGRAPH_PAUSE_S = 1.5
#: Past this many words, a paragraph ends at the next sentence followed by a breath's pause...
PARAGRAPH_WORDS = 80
PARAGRAPH_BREATH_S = 0.5
#: ...and past this many at the next sentence end, pause or not (a wall of text helps nobody).
PARAGRAPH_MAX_WORDS = 150


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


def shown_cues(cues: list[Cue]) -> list[Cue]:
    """Cues with text left to show: an empty cue would be a malformed SRT block."""
    return [cue for cue in cues if caption_lines(cue.lines)]


class Paragraph(NamedTuple):
    """One paragraph of a transcript: where it starts, its text, and who speaks, named only
    where the speaker changes."""

    start: float
    text: str
    speaker: str | None = None


def _pause(before: Cue, cue: Cue) -> float:
    """Silence between two cues: from the speech behind them when known (a cue may linger
    after its last word), else from the cues' own times (cues edited by a reviewer)."""
    end = before.words[-1].end if before.words else before.end
    start = cue.words[0].start if cue.words else cue.start
    return start - end


def paragraphs(cues: list[Cue]) -> list[Paragraph]:
    """The transcript in paragraphs: a new one at each change of speaker, after a long pause
    (`PARAGRAPH_PAUSE_S`), and at a sentence end once a paragraph is long. Shared by the
    caption stage and the review page, so a reviewer's edit keeps the same paragraphs."""
    groups: list[list[Cue]] = []
    count = 0
    for cue in shown_cues(cues):
        if groups:
            last = groups[-1][-1]
            sentence = ends_sentence(last.text)
            if (cue.speaker != last.speaker or _pause(last, cue) >= PARAGRAPH_PAUSE_S
                    or (sentence and count >= PARAGRAPH_WORDS
                        and _pause(last, cue) >= PARAGRAPH_BREATH_S)
                    or (sentence and count >= PARAGRAPH_MAX_WORDS)):
                groups.append([])
                count = 0
        else:
            groups.append([])
        groups[-1].append(cue)
        count += len(cue.text.split())
    out: list[Paragraph] = []
    for k, group in enumerate(groups):
        speaker = caption_line(group[0].speaker or "") or None
        changed = speaker is not None and (k == 0 or groups[k - 1][0].speaker != group[0].speaker)
        out.append(Paragraph(group[0].start, " ".join(caption_line(c.text) for c in group),
                             speaker if changed else None))
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


def transcript_text(title: str, paras: Sequence[Paragraph | str]) -> str:
    """Plain text: the title, then paragraphs separated by blank lines, `Name: ` where the
    speaker changes."""
    head = [title, ""] if title else []
    body = [p if isinstance(p, str) else f"{p.speaker}: {p.text}" if p.speaker else p.text
            for p in paras]
    return "\n".join([*head, "\n\n".join(body)]) + "\n"


def transcript_html(title: str, language: str,
                    paras: Sequence[Paragraph | tuple[float, str]]) -> str:
    """A standalone, accessible transcript page: landmarks, a heading, one paragraph per
    `Paragraph` with its start as a `<time>` and the speaker's name where it changes.

    Shared by the caption stage and the review page (paragraphs from edited cues).
    """
    esc = html.escape
    title = title or "Transcript"
    body = []
    for p in (Paragraph(*para) for para in paras):
        who = f'<span class="speaker">{esc(p.speaker)}:</span> ' if p.speaker else ""
        body.append(f'<p id="t{round(p.start * 1000)}"><time datetime="PT{p.start:.3f}S">'
                    f"{esc(timestamp(p.start, '.', always_hours=False)[:-4])}</time> "
                    f"{who}{esc(p.text)}</p>")
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
        "margin-right:.5rem}.speaker{font-weight:600}</style>",
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
        return transcript_text(doc.title, paragraphs(doc.cues))


class HtmlTranscript(Writer):
    suffix = "html"
    media_type = "text/html"

    def render(self, doc: Document) -> str:
        return transcript_html(doc.title, doc.language, paragraphs(doc.cues))


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
