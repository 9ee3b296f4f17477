"""Every feed test workspace gets valid show artwork (fixtures: tests/feeds/plugin.py)."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _artwork(artwork: object) -> None:
    """Feeds need show artwork; the workspace `learncast init` creates has none."""
