"""Golden files: the feeds of three fixed fixture shows (audio-only, video, serial course).

Volatile fields (lastBuildDate, generator) are normalised before comparing. After an
intended change to the feed format, regenerate with
`LEARNCAST_UPDATE_GOLDEN=1 pytest tests/feeds/test_golden.py` and review the diff.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from pipeline.feeds.build import FeedKind, build_feed
from tests.feeds.fixtures import fixture_spec

GOLDEN = Path(__file__).parent / "golden"
CASES: list[tuple[str, FeedKind]] = [("audio-only", "audio"), ("video", "audio"),
                                     ("video", "video"), ("course", "audio")]


def normalise(xml: str) -> str:
    xml = re.sub(r"<lastBuildDate>[^<]*</lastBuildDate>", "<lastBuildDate/>", xml)
    return re.sub(r"<generator>[^<]*</generator>", "<generator/>", xml)


@pytest.mark.parametrize(("show", "kind"), CASES, ids=[f"{s}-{k}" for s, k in CASES])
def test_feed_matches_golden_file(show: str, kind: FeedKind) -> None:
    built = normalise(build_feed(fixture_spec(show, kind)).decode("utf-8"))
    golden = GOLDEN / f"{show}-{kind}.xml"
    if os.environ.get("LEARNCAST_UPDATE_GOLDEN") == "1":
        golden.parent.mkdir(exist_ok=True)
        golden.write_text(built, encoding="utf-8")
    assert golden.is_file(), f"{golden} is missing; create it with LEARNCAST_UPDATE_GOLDEN=1"
    assert built == golden.read_text(encoding="utf-8")


def test_builds_are_deterministic() -> None:
    for show, kind in CASES:
        assert build_feed(fixture_spec(show, kind)) == build_feed(fixture_spec(show, kind))
