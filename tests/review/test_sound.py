"""The episode page shows the sound report the normalise stage recorded (kept apart from
test_app.py, which another branch is changing)."""

from __future__ import annotations

from pipeline.review.app import create_app
from pipeline.state import StateDB
from pipeline.workspace import Context
from tests.review.conftest import MakeEpisode


def test_episode_page_shows_the_sound_report(ctx: Context, db: StateDB,
                                             make_episode: MakeEpisode) -> None:
    job = make_episode("audio", name="briefing")
    sound = job.results.sound  # recorded by the real normalise stage
    page = create_app(ctx, db).test_client().get(f"/episodes/{job.id}").get_data(as_text=True)
    assert 'aria-label="Sound report"' in page
    assert "spread between 5 s sections (LU)" in page
    assert f"<td>{sound['loudness_range_lu']['before']}</td>" in page
    assert "Short-term (3 s) loudness" in page
