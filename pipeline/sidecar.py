"""The optional episode sidecar (`<stem>.yaml|.yml|.json`) dropped beside a recording.

Everything a later stage would refuse is refused here, at the door, while the producer is
still at hand: a title the feed cannot carry (control characters), a date no feed can write,
a chapter time that is not a number. Whatever passes is stored and read back unchanged.

A sidecar is read defensively: it must be a regular file of the inbox (never a symbolic link,
whose target could be anything: a credentials file, `/proc/self/mem`), small, UTF-8, and
shallow; parser failures (too deep, absurdly long numbers) become rejections, not crashes.
Problems are reported all at once, in the producer's words: the field, what was given and
what is allowed, never a parser's or pydantic's jargon, and never a quote of the file.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import re
import stat
import unicodedata
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from pipeline.errors import InputError

SIDECAR_SUFFIXES = (".yaml", ".yml", ".json")
MAX_SIDECAR_BYTES = 256 * 1024
#: Publish dates outside [EARLIEST_YEAR, now + LATEST_YEARS_AHEAD] are refused: no feed or
#: RFC 2822 date can carry year 10000 (where 9999-12-31 with a negative offset ends up), and
#: a date centuries away is a typo.
EARLIEST_YEAR = 1900
LATEST_YEARS_AHEAD = 10
#: At most this many problems are listed (a sidecar of garbage would list thousands).
MAX_PROBLEMS = 20
_CLOCK = re.compile(r"^(?:(\d+):)?(\d{1,2}):(\d{1,2}(?:\.\d+)?)$")
_AGAIN = "Fix it and drop the recording and the sidecar into the inbox again"


def parse_clock(value: Any) -> float:
    """Seconds from a number or `MM:SS` / `HH:MM:SS(.mmm)`; finite and not negative.

    Infinity and NaN are refused here: stored as JSON they would come back as null.
    """
    if isinstance(value, bool):
        raise ValueError("is not a time")
    if isinstance(value, int | float):
        try:
            seconds = float(value)
        except OverflowError:  # an int beyond float range
            raise ValueError("is not a time") from None
    elif isinstance(value, str) and (m := _CLOCK.match(value.strip())):
        hours, minutes, secs = m.groups()
        seconds = int(hours or 0) * 3600 + int(minutes) * 60 + float(secs)
    elif isinstance(value, str):
        try:
            seconds = float(value)
        except ValueError:
            raise ValueError("is not a time") from None
    else:
        raise ValueError("is not a time")
    if not math.isfinite(seconds):
        raise ValueError("is not a time")
    if seconds < 0:
        raise ValueError("is negative")
    return seconds


#: Characters a speaker name may not hold: captions write `<v Name>` and `Name: text`.
SPEAKER_NAME_FORBIDDEN = "<>&:"
MAX_SPEAKER_NAME = 64


def speaker_name_problem(name: str) -> str | None:
    """Why `name` cannot name a speaker in captions, or None (also used by the review page)."""
    if not name or len(name) > MAX_SPEAKER_NAME:
        return f"a speaker name must be 1 to {MAX_SPEAKER_NAME} characters"
    if any(ch in name for ch in SPEAKER_NAME_FORBIDDEN):
        return "a speaker name cannot contain <, >, & or : (captions use them)"
    return text_problem(name)


def text_problem(value: str, *, allow: str = "") -> str | None:
    """Why `value` cannot go into a feed, an ID3 tag or the database, or None.

    XML 1.0 refuses control characters (but tab, newline, carriage return), lone surrogates
    (which also cannot be stored as UTF-8) and U+FFFE/U+FFFF.
    """
    for ch in value:
        if ch in allow:
            continue
        category = unicodedata.category(ch)
        if category == "Cc":
            return f"contains a control character (U+{ord(ch):04X})"
        if category == "Cs" or ch in "\ufffe\uffff":
            return f"contains U+{ord(ch):04X}, which is not a character"
    return None


def _clean_text(value: str, *, allow: str = "") -> str:
    problem = text_problem(value, allow=allow)
    if problem:
        raise ValueError(problem)
    return value


class Chapter(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    start: float = Field(description="Start time: seconds or HH:MM:SS.")
    title: str = Field(min_length=1, max_length=200)

    @field_validator("start", mode="before")
    @classmethod
    def _clock(cls, value: Any) -> float:
        return parse_clock(value)

    @field_validator("title")
    @classmethod
    def _title(cls, value: str) -> str:
        value = _clean_text(value).strip()
        if not value:
            raise ValueError("is empty")
        return value


class SoundbiteSpec(BaseModel):
    """A soundbite the producer chose: start in the recording as dropped, length, title."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    start: float = Field(description="Start time: seconds or HH:MM:SS.")
    duration: float = Field(gt=0, le=300, description="Length in seconds.")
    title: str | None = Field(None, min_length=1, max_length=128)

    @field_validator("start", mode="before")
    @classmethod
    def _clock(cls, value: Any) -> float:
        return parse_clock(value)

    @field_validator("duration", mode="before")
    @classmethod
    def _length(cls, value: Any) -> float:
        return parse_clock(value)


class EpisodeMetadata(BaseModel):
    """Everything a producer can say about an episode; all optional."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    title: str | None = Field(None, min_length=1, max_length=255)
    description: str | None = None
    show: str | None = None
    season: int | None = Field(None, ge=1, le=9999)
    episode: int | None = Field(None, ge=1, le=99999)
    episode_type: Literal["full", "trailer", "bonus"] = "full"
    publish_date: dt.datetime | None = None
    explicit: bool = False
    glossary: list[str] = Field(default_factory=list, max_length=500)
    speakers: list[str] = Field(default_factory=list, max_length=20)
    chapters: list[Chapter] = Field(default_factory=list, max_length=500)
    soundbites: list[SoundbiteSpec] = Field(default_factory=list, max_length=3)
    producer: str | None = Field(None, max_length=254)

    @field_validator("producer")
    @classmethod
    def _producer(cls, value: str | None) -> str | None:
        from pipeline.config import EMAIL_RE

        if value is not None and not EMAIL_RE.match(value.strip()):
            raise ValueError("is not an e-mail address")
        return None if value is None else value.strip()

    @field_validator("title")
    @classmethod
    def _title(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = _clean_text(value).strip()
        if not value:  # the feed's <title> would be empty, which Apple refuses
            raise ValueError("is empty")
        return value

    @field_validator("show")
    @classmethod
    def _show(cls, value: str | None) -> str | None:
        return None if value is None else _clean_text(value)

    @field_validator("description")
    @classmethod
    def _description(cls, value: str | None) -> str | None:
        if value is None:
            return None
        _clean_text(value, allow="\t\n\r")
        # Apple's limit for an episode description; checked here so the producer hears of it
        # at drop time rather than at publish time.
        size = len(value.encode("utf-8"))
        if size > 4000:
            raise ValueError(f"is {size} bytes long")
        return value

    @field_validator("publish_date", mode="before")
    @classmethod
    def _date(cls, value: Any) -> Any:
        if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
            return dt.datetime(value.year, value.month, value.day, tzinfo=dt.UTC)
        return value

    @field_validator("publish_date")
    @classmethod
    def _aware(cls, value: dt.datetime | None) -> dt.datetime | None:
        if value is None:
            return None
        # The year is checked before any zone conversion: 9999-12-31T23:00-05:00 is in
        # year 10000 in UTC, which Python cannot even represent.
        latest = dt.datetime.now(dt.UTC).year + LATEST_YEARS_AHEAD
        if not EARLIEST_YEAR <= value.year <= latest:
            raise ValueError(f"is not between {EARLIEST_YEAR}-01-01 and {latest}-12-31")
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value

    @field_validator("glossary")
    @classmethod
    def _terms(cls, value: list[str]) -> list[str]:
        terms = [t.strip() for t in value if t.strip()]
        for n, term in enumerate(terms, start=1):
            if len(term) > 100:
                raise ValueError(f"term {n} is {len(term)} characters long")
            if problem := text_problem(term):
                raise ValueError(f"term {n} {problem}")
        return terms

    @field_validator("speakers")
    @classmethod
    def _speakers(cls, value: list[str]) -> list[str]:
        names = [" ".join(n.split()) for n in value]
        for name in names:
            problem = speaker_name_problem(name)
            if problem:
                raise ValueError(f"{name!r}: {problem}")
        if len({n.casefold() for n in names}) != len(names):
            raise ValueError("speaker names must be different from each other")
        return names

    @field_validator("chapters")
    @classmethod
    def _chapter_order(cls, value: list[Chapter]) -> list[Chapter]:
        for n in range(1, len(value)):
            if value[n].start <= value[n - 1].start:
                raise ValueError(
                    f"are not in strictly increasing order of start: chapter {n + 1} "
                    f"({_clock(value[n].start)}) does not start after chapter {n} "
                    f"({_clock(value[n - 1].start)})")
        return value


def _clock(seconds: float) -> str:
    minutes, secs = divmod(seconds, 60)
    return f"{int(minutes)}:{secs:06.3f}".rstrip("0").rstrip(".")


#: What each field accepts, in the producer's words (the end of every problem about it).
_ALLOWED = {
    "title": "text of 1 to 255 characters without control characters",
    "description": "text of at most 4000 bytes (Apple's limit) without control characters",
    "show": "the id of a show in config/learncast.toml",
    "season": "a whole number from 1 to 9999",
    "episode": "a whole number from 1 to 99999",
    "episode_type": "full, trailer or bonus",
    "publish_date": "a date (2026-12-01) or date and time (2026-12-01T09:00:00Z) between "
                    f"{EARLIEST_YEAR} and {LATEST_YEARS_AHEAD} years from now",
    "explicit": "true or false",
    "glossary": "a list of up to 500 terms of at most 100 characters each",
    "speakers": "a list of up to 20 different names of at most 64 characters, without <, >, "
                "& or :, in the order they first speak",
    "chapters": "a list of up to 500 chapters, each {start, title}, with increasing starts",
    "chapter": "a mapping with start and title",
    "chapter.start": "seconds (e.g. 90) or [HH:]MM:SS (e.g. 1:30)",
    "chapter.title": "text of 1 to 200 characters without control characters",
    "glossary term": "text of at most 100 characters",
    "producer": "the e-mail address to tell if the recording fails (ana@example.com)",
}

#: pydantic's error types, said plainly ("is ..." follows what the producer gave).
_WHAT = {
    "missing": "is missing",
    "int_parsing": "is not a whole number", "int_type": "is not a whole number",
    "int_from_float": "is not a whole number", "float_parsing": "is not a number",
    "float_type": "is not a number", "bool_parsing": "is not true or false",
    "bool_type": "is not true or false", "string_type": "is not text",
    "string_unicode": "is not valid Unicode text (it holds a lone surrogate)",
    "string_too_short": "is empty", "list_type": "is not a list",
    "greater_than_equal": "is too small", "greater_than": "is too small",
    "less_than_equal": "is too large", "less_than": "is too large",
    "literal_error": "is not one of the choices", "model_type": "is not a mapping",
    "dict_type": "is not a mapping", "model_attributes_type": "is not a mapping",
}


def _shown(value: Any) -> str:
    """What the producer gave, briefly (mappings and lists are not repeated back)."""
    if isinstance(value, dict | list | tuple):
        return "this"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _where(loc: tuple[int | str, ...]) -> tuple[str, str]:
    """(how the problem's place is named, the key into _ALLOWED)."""
    head = str(loc[0]) if loc else ""
    if head == "chapters" and len(loc) >= 2 and isinstance(loc[1], int):
        if len(loc) == 2:
            return f"chapter {loc[1] + 1}", "chapter"
        return f"chapter {loc[1] + 1} '{loc[2]}'", f"chapter.{loc[2]}"
    if head == "glossary" and len(loc) >= 2 and isinstance(loc[1], int):
        return f"glossary term {loc[1] + 1}", "glossary term"
    return f"field '{head}'", head


def _problem(err: Any) -> str:
    loc = tuple(err["loc"])
    if err["type"] == "extra_forbidden":
        if loc[:1] == ("chapters",) and len(loc) == 3:
            return (f"chapter {int(loc[1]) + 1}: unknown field '{loc[2]}' (allowed: start, "
                    "title)")
        return (f"unknown field '{loc[-1]}' (allowed: "
                f"{', '.join(EpisodeMetadata.model_fields)})")
    where, key = _where(loc)
    if err["type"] == "value_error":
        what = str(err.get("ctx", {}).get("error", err["msg"]))
    elif err["type"] in ("string_too_long", "too_long"):
        got = err.get("input")
        what = (f"is {len(got)} characters long" if isinstance(got, str)
                else f"has {len(got)} entries" if isinstance(got, list | tuple) else "is too long")
    elif err["type"].startswith(("datetime", "date")):
        what = "is not a date"
    else:
        what = _WHAT.get(err["type"], "is not allowed")
    allowed = _ALLOWED.get(key)
    shown = "" if err["type"] == "missing" else _shown(err.get("input")) + " "
    return f"{where}: {shown}{what}" + (f"; expected {allowed}" if allowed else "")


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader, minus what a sidecar never needs and an attacker might use:
    aliases (`*name`: exponential documents from a few lines); a timestamp that is no date
    (2026-13-45) stays text, for the field check to name, instead of crashing the parser."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.composer.ComposerError(
                None, None, "aliases (*name) are not supported in sidecars", event.start_mark)
        return super().compose_node(parent, index)

    def construct_yaml_timestamp(self, node: Any) -> Any:
        try:
            return super().construct_yaml_timestamp(node)
        except ValueError:
            return self.construct_scalar(node)


_Loader.add_constructor("tag:yaml.org,2002:timestamp", _Loader.construct_yaml_timestamp)


def find_sidecar(media: Path) -> Path | None:
    """The sidecar beside `media`. A symbolic link is found too (never followed), so it
    travels with the recording and is refused with it rather than left in the inbox."""
    for suffix in SIDECAR_SUFFIXES:
        candidate = media.with_name(media.stem + suffix)
        if candidate == media:
            continue
        try:
            mode = candidate.lstat().st_mode
        except OSError:  # absent, or a name too long to exist
            continue
        if stat.S_ISREG(mode) or stat.S_ISLNK(mode):
            return candidate
    return None


def _read(path: Path) -> str:
    """The sidecar's text: a regular file (no link followed, no FIFO waited on), UTF-8."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as exc:
        if path.is_symlink():
            raise InputError(f"sidecar {path.name} is a symbolic link, not a file; copy the "
                             "sidecar itself into the inbox beside the recording") from None
        raise InputError(f"sidecar {path.name} cannot be read ({exc.strerror}); copy it "
                         "into the inbox again") from None
    with os.fdopen(fd, "rb") as fh:
        st = os.fstat(fh.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise InputError(f"sidecar {path.name} is not a regular file; copy the sidecar "
                             "itself into the inbox")
        data = fh.read(MAX_SIDECAR_BYTES + 1)
    if len(data) > MAX_SIDECAR_BYTES:
        raise InputError(f"sidecar {path.name} is more than {MAX_SIDECAR_BYTES} bytes; at "
                         f"most {MAX_SIDECAR_BYTES} are accepted. Shorten it and drop both "
                         "files again")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(f"sidecar {path.name} is not UTF-8 text (byte 0x{data[exc.start]:02X}"
                         f" at position {exc.start}); save it as UTF-8 and drop both files "
                         "again") from None


#: PyYAML's words for what a producer wrote, said as a producer would.
_YAML_WORDS = (("'<stream end>'", "the end of the file"), ("<stream end>", "the end of the file"),
               ("flow sequence", "[list]"), ("flow mapping", "{mapping}"),
               ("block mapping", "mapping"), ("block sequence", "list"),
               ("block collection", "list or mapping"))


def _syntax_problem(exc: Exception, text: str) -> str:
    """A parser error in plain words: where, and what, never a quote of the text."""
    if isinstance(exc, RecursionError):
        return "it is nested too deeply (lists or mappings inside each other)"
    if isinstance(exc, json.JSONDecodeError):
        return f"line {exc.lineno}, column {exc.colno}: {exc.msg}"
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem_mark is not None:
        mark = exc.problem_mark
        what = exc.problem or "unexpected content"
        context = f" ({exc.context})" if exc.context else ""
        for jargon, plain in _YAML_WORDS:
            what, context = what.replace(jargon, plain), context.replace(jargon, plain)
        return f"line {mark.line + 1}, column {mark.column + 1}: {what}{context}"
    if isinstance(exc, yaml.reader.ReaderError):
        line = text.count("\n", 0, exc.position) + 1
        return (f"line {line}: character U+{exc.character:04X} is not allowed in YAML; remove "
                "it")
    if isinstance(exc, ValueError) and "digits" in str(exc):
        longest = max((len(m) for m in re.findall(r"\d+", text)), default=0)
        return f"a number has {longest} digits; no field takes a number that long"
    return str(exc).split("\n", 1)[0]


#: Extra checks of the parsed mapping that need configuration (is `show` configured?);
#: each returns problems phrased like the field problems.
Check = Callable[[dict[str, Any]], list[str]]


def load_sidecar(path: Path | None, *, check: Check | None = None) -> EpisodeMetadata:
    """Parse and validate; InputError names the sidecar and lists every problem found."""
    if path is None:
        return EpisodeMetadata()
    text = _read(path)
    kind = "JSON" if path.suffix == ".json" else "YAML"
    try:
        data = json.loads(text) if kind == "JSON" else yaml.load(text, Loader=_Loader)
    except (RecursionError, ValueError, yaml.YAMLError) as exc:
        raise InputError(f"sidecar {path.name} is not valid {kind}: "
                         f"{_syntax_problem(exc, text)}. {_AGAIN}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise InputError(f"sidecar {path.name} must be a mapping of fields (title: ..., "
                         f"show: ...), not a {type(data).__name__}. {_AGAIN}")
    problems: list[str] = []
    metadata = None
    try:
        metadata = EpisodeMetadata.model_validate(data)
    except ValidationError as exc:
        problems += [_problem(err) for err in exc.errors()]
    except RecursionError:
        problems.append("it is nested too deeply (lists or mappings inside each other)")
    if check is not None:
        problems += check(data)
    if problems:
        listed = problems[:MAX_PROBLEMS]
        if len(problems) > MAX_PROBLEMS:
            listed.append(f"and {len(problems) - MAX_PROBLEMS} more")
        raise InputError(f"sidecar {path.name} is invalid:\n  - " + "\n  - ".join(listed)
                         + f"\n{_AGAIN}")
    assert metadata is not None
    return metadata


def load_raw(path: Path) -> dict[str, Any]:
    """The sidecar's mapping as written, unchecked, or {} when it cannot be read or parsed.

    For telling the producer that a recording was rejected (perhaps for this very sidecar):
    only its `producer` and `show` are wanted, each checked by the caller."""
    try:
        text = _read(path)
        data = json.loads(text) if path.suffix == ".json" else yaml.load(text, Loader=_Loader)
    except (InputError, RecursionError, ValueError, yaml.YAMLError):
        return {}
    return data if isinstance(data, dict) else {}
