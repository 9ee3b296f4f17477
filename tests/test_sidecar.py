"""Sidecar parsing (pipeline/sidecar.py): what is refused, and how it is said.

Every refusal names the sidecar and each field, says what was given and what is allowed, and
lists every problem at once; nothing that passes fails to read back from the database.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pipeline.errors import InputError
from pipeline.sidecar import EpisodeMetadata, find_sidecar, load_sidecar, parse_clock


def _load(tmp_path: Path, text: str | bytes, suffix: str = ".yaml") -> EpisodeMetadata:
    path = tmp_path / f"ep{suffix}"
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return load_sidecar(path)


def _refusal(tmp_path: Path, text: str | bytes, suffix: str = ".yaml") -> str:
    with pytest.raises(InputError) as caught:
        _load(tmp_path, text, suffix)
    message = str(caught.value)
    assert f"ep{suffix}" in message and "drop" in message
    for jargon in ("Value error", "<unicode string>", "(sidecar)", "input_value", "type=",
                   "pydantic", "Traceback"):
        assert jargon not in message, message
    return message


@pytest.mark.parametrize("value", [float("inf"), float("nan"), "1e309", "-1e309", "inf", 10**400,
                                   True, "12:75:00:00"])
def test_clock_refuses_what_is_not_a_finite_time(value: object) -> None:
    with pytest.raises(ValueError, match="is not a time"):
        parse_clock(value)


def test_clock_reads_seconds_and_clock_times() -> None:
    assert [parse_clock(v) for v in (90, 1.5, "90", "1:30", "01:02:03.5")] == [
        90.0, 1.5, 90.0, 90.0, 3723.5]


@pytest.mark.parametrize(("text", "suffix"), [
    ("chapters:\n  - {start: .inf, title: A}\n", ".yaml"),
    ("chapters:\n  - {start: .nan, title: A}\n", ".yaml"),
    ("chapters:\n  - {start: '1e309', title: A}\n", ".yaml"),
    ('{"chapters": [{"start": 1e309, "title": "A"}]}', ".json"),
    ('{"chapters": [{"start": NaN, "title": "A"}]}', ".json"),
    ('{"chapters": [{"start": -Infinity, "title": "A"}]}', ".json"),
])
def test_non_finite_chapter_starts_are_refused(tmp_path: Path, text: str, suffix: str) -> None:
    message = _refusal(tmp_path, text, suffix)
    assert "chapter 1 'start'" in message and "seconds (e.g. 90)" in message


def test_what_passes_reads_back_unchanged(tmp_path: Path) -> None:
    meta = _load(tmp_path, "title: ' Café & <Culture> '\nseason: 2\nepisode: 5\n"
                 "publish_date: 2026-12-01T09:00:00-05:00\nglossary: [OKR]\n"
                 "description: \"line one\\nline\\ttwo\"\n"
                 "chapters:\n  - {start: '0:00', title: Intro}\n  - {start: 90.5, title: B}\n")
    assert meta.title == "Café & <Culture>"
    assert EpisodeMetadata.model_validate_json(meta.model_dump_json()) == meta


@pytest.mark.parametrize(("text", "suffix", "expected"), [
    ('{"title": ' + "[" * 100_000 + "]" * 100_000 + "}", ".json", "nested too deeply"),
    ("title: " + "[" * 10_000 + "]" * 10_000 + "\n", ".yaml", "nested too deeply"),
    ('{"season": ' + "7" * 5000 + "}", ".json", "a number has 5000 digits"),
    ("season: " + "7" * 5000 + "\n", ".yaml", "a number has 5000 digits"),
    ("a: &a [x, x]\nb: [*a, *a]\n", ".yaml", "aliases"),
    ("publish_date: 2026-13-45\n", ".yaml", "'publish_date': '2026-13-45' is not a date"),
    (b"title: caf\xe9\n", ".yaml", "not UTF-8 text (byte 0xE9"),
    ("title: [oops\n", ".yaml", "line 2, column 1"),
    ('{"title": "x",}', ".json", "line 1, column 15"),
    ("title: \"a\x07b\"\n", ".yaml", "character U+0007 is not allowed"),
    ("- a list\n", ".yaml", "must be a mapping"),
])
def test_unparseable_sidecars_are_refused_not_crashed_on(tmp_path: Path, text: str | bytes,
                                                        suffix: str, expected: str) -> None:
    assert expected in _refusal(tmp_path, text, suffix)


def test_a_parser_error_never_quotes_the_file(tmp_path: Path) -> None:
    message = _refusal(tmp_path, "[default]\naws_secret_access_key: [wJalrXUtnFEMI-SECRET\n")
    assert "wJalr" not in message and "line 2, column 1" in message


def test_symlinked_sidecars_are_found_but_never_followed(tmp_path: Path) -> None:
    secret = tmp_path / "credentials"
    secret.write_text("title: [SECRET\n")
    media = tmp_path / "ep.wav"
    media.write_bytes(b"")
    (tmp_path / "ep.yaml").symlink_to(secret)
    found = find_sidecar(media)
    assert found == tmp_path / "ep.yaml"
    with pytest.raises(InputError, match="symbolic link") as caught:
        load_sidecar(found)
    assert "SECRET" not in str(caught.value)
    (tmp_path / "ep.yaml").unlink()
    (tmp_path / "ep.yaml").symlink_to("/proc/self/mem")
    with pytest.raises(InputError, match="symbolic link"):
        load_sidecar(find_sidecar(media))


def test_a_fifo_is_not_waited_on(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "ep.yaml")
    with pytest.raises(InputError, match="not a regular file"):
        load_sidecar(tmp_path / "ep.yaml")


def test_a_name_too_long_for_a_sidecar_has_none(tmp_path: Path) -> None:
    media = tmp_path / ("a" * 251 + ".wav")  # its .yaml would be 256 bytes
    media.write_bytes(b"")
    assert find_sidecar(media) is None


@pytest.mark.parametrize(("text", "expected"), [
    ('title: "Weekly\\x07 briefing"\n', "field 'title': 'Weekly\\x07 briefing' contains a "
                                        "control character (U+0007)"),
    ('{"title": "half \\ud800"}', "field 'title': 'half \\ud800' is not valid Unicode text"),
    ('{"glossary": ["\\uffff"]}', "term 1 contains U+FFFF, which is not a character"),
    ('description: "red \\e[31m"\n', "field 'description'"),
    ('title: "   "\n', "field 'title': '   ' is empty"),
    ('chapters:\n  - {start: 0, title: "Intro\\x00"}\n', "chapter 1 'title'"),
    ("glossary: [ok, \"bad\\x1b\"]\n", "term 2 contains a control character"),
    ("publish_date: 9999-12-31T23:00:00-05:00\n", "is not between 1900-01-01 and"),
    ("publish_date: 0001-01-01\n", "is not between 1900-01-01 and"),
])
def test_what_a_feed_cannot_carry_is_refused_at_the_door(tmp_path: Path, text: str,
                                                        expected: str) -> None:
    suffix = ".json" if text.startswith("{") else ".yaml"
    assert expected in _refusal(tmp_path, text, suffix)


def test_every_problem_is_listed_at_once_in_plain_words(tmp_path: Path) -> None:
    message = _refusal(tmp_path, (
        "season: two\nepisode: 0\nepisode_type: special\ncolour: red\nexplicit: maybe\n"
        "chapters:\n  - {start: '1:00', title: B}\n  - {start: 5, title: A, at: 3}\n"))
    for words in ("field 'season': 'two' is not a whole number; expected a whole number "
                  "from 1 to 9999",
                  "field 'episode': 0 is too small",
                  "field 'episode_type': 'special' is not one of the choices; expected full, "
                  "trailer or bonus",
                  "unknown field 'colour' (allowed: title, description",
                  "field 'explicit': 'maybe' is not true or false",
                  "chapter 2: unknown field 'at' (allowed: start, title)"):
        assert words in message, (words, message)


def test_chapter_order_is_reported_with_the_times(tmp_path: Path) -> None:
    message = _refusal(tmp_path, "chapters:\n  - {start: '1:00', title: B}\n"
                                 "  - {start: 5, title: A}\n")
    assert "chapter 2 (0:05) does not start after chapter 1 (1:00)" in message


def test_checks_from_the_configuration_join_the_list(tmp_path: Path) -> None:
    path = tmp_path / "ep.yaml"
    path.write_text("season: two\nshow: nope\n")
    with pytest.raises(InputError) as caught:
        load_sidecar(path, check=lambda data: [f"field 'show': {data['show']!r} is unknown"])
    assert "'season'" in str(caught.value) and "'nope' is unknown" in str(caught.value)
