from __future__ import annotations

from scripts.update_readme import README, spliced


def test_readme_config_reference_matches_the_schema() -> None:
    text = README.read_text()
    assert spliced(text) == text, "README's configuration reference is stale: run `make docs`"
