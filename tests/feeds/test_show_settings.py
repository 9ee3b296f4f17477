"""Show keys for feeds in `config/learncast.toml`: checked at start-up with clear messages."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.config import load_settings, render_config
from pipeline.errors import ConfigError


def _write(root: Path, shows: str) -> None:
    (root / "config").mkdir(parents=True, exist_ok=True)
    (root / "config" / "learncast.toml").write_text(shows)


def test_show_feed_keys_from_toml(tmp_path: Path) -> None:
    _write(tmp_path, '''
[[shows]]
id = "leaders"
title = "Leaders Lab"
category = "Business"
subcategory = "Management"
type = "serial"
medium = "course"
internal = true
feed_token = true
owner_email = "ld@example.com"

[[shows.persons]]
name = "Sam Rivera"
role = "host"

[[shows.persons]]
name = "Kim Ode"
role = "producer"
group = "crew"
''')
    show = load_settings(tmp_path, env={}).show("leaders")
    assert (show.category, show.subcategory, show.type, show.medium) == (
        "Business", "Management", "serial", "course")
    assert show.internal and show.feed_token and show.locked == "auto"
    assert [(p.name, p.role, p.group) for p in show.persons] == [
        ("Sam Rivera", "host", "cast"), ("Kim Ode", "producer", "crew")]


@pytest.mark.parametrize(("keys", "message"), [
    ('category = "Literature"', "category 'Literature' is not one of Apple's categories; "
                                "use one of: Arts, Business"),
    ('category = "Technology"\nsubcategory = "Courses"',
     "subcategory 'Courses' is not an Apple subcategory of 'Technology'; allowed: none"),
    ('type = "seasonal"', "'shows.0.type' = 'seasonal'"),
    ('medium = "audiobook"', "'shows.0.medium' = 'audiobook'"),
    ('locked = "maybe"', "'shows.0.locked' = 'maybe'"),
])
def test_invalid_show_keys_are_config_errors(tmp_path: Path, keys: str, message: str) -> None:
    _write(tmp_path, f'[[shows]]\nid = "a"\ntitle = "A"\n{keys}\n')
    with pytest.raises(ConfigError) as info:
        load_settings(tmp_path, env={})
    assert message in str(info.value)


def test_documented_default_config_loads(tmp_path: Path) -> None:
    _write(tmp_path, render_config())
    show = load_settings(tmp_path, env={}).shows[0]
    assert (show.category, show.subcategory, show.explicit, show.type) == (
        "Education", "Courses", False, "episodic")
