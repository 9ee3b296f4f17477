from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from pipeline.config import Settings, load_settings, render_config
from pipeline.errors import ConfigError
from pipeline.workspace import init_workspace

REPO = Path(__file__).resolve().parent.parent


def write_config(root: Path, text: str) -> None:
    (root / "config").mkdir(parents=True, exist_ok=True)
    (root / "config" / "learncast.toml").write_text(text)


def test_defaults_render_to_a_config_that_loads_back_identically(tmp_path: Path) -> None:
    write_config(tmp_path, render_config())
    assert load_settings(tmp_path, env={}) == Settings()


def test_a_config_with_show_persons_renders_them_and_loads_back(tmp_path: Path) -> None:
    """`learncast config` prints the effective configuration: [[shows.persons]] included."""
    write_config(tmp_path, '[[shows]]\nid = "a"\ntitle = "A"\n'
                 '[[shows.persons]]\nname = "Ann Lee"\nrole = "host"\n'
                 '[[shows.persons]]\nname = "Bo \\"B\\" Chan"\nrole = "guest"\n'
                 'href = "https://example.com/bo"\n'
                 '[[shows]]\nid = "b"\ntitle = "B"\n')
    settings = load_settings(tmp_path, env={})
    assert [p.name for p in settings.shows[0].persons] == ["Ann Lee", 'Bo "B" Chan']
    rendered = render_config(settings)
    assert rendered.splitlines().count("[[shows.persons]]") == 2
    again = tmp_path / "again"
    write_config(again, rendered)
    assert load_settings(again, env={}) == settings


def test_rendered_config_documents_every_key() -> None:
    text = render_config()
    data = tomllib.loads(text)
    for name, section in Settings().model_dump().items():
        if isinstance(section, dict):
            assert set(section) == set(data[name]), name
            for key in section:
                assert f"\n{key} = " in text
    # every key line is preceded by a comment line
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if " = " in line and not line.startswith("#"):
            assert lines[i - 1].startswith("#"), line


def test_repository_config_is_valid() -> None:
    load_settings(REPO, env={})


def test_unknown_key_names_file_key_and_allowed_keys(tmp_path: Path) -> None:
    write_config(tmp_path, "[ingest]\nsettle_secs = 3\n")
    with pytest.raises(ConfigError) as exc:
        load_settings(tmp_path, env={})
    msg = str(exc.value)
    assert "learncast.toml" in msg and "ingest.settle_secs" in msg
    assert "settle_seconds" in msg  # what is allowed


def test_bad_value_names_key_value_and_rule(tmp_path: Path) -> None:
    write_config(tmp_path, "[runner]\nretry_attempts = 0\n")
    with pytest.raises(ConfigError) as exc:
        load_settings(tmp_path, env={})
    msg = str(exc.value)
    assert "runner.retry_attempts" in msg and "= 0" in msg and "greater than or equal to 1" in msg


def test_invalid_toml_is_a_config_error(tmp_path: Path) -> None:
    write_config(tmp_path, "[ingest\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(tmp_path, env={})


def test_show_validation(tmp_path: Path) -> None:
    write_config(tmp_path, '[[shows]]\nid = "Bad Id"\ntitle = "x"\n')
    with pytest.raises(ConfigError, match=r"shows\.0\.id"):
        load_settings(tmp_path, env={})
    write_config(tmp_path, 'default_show = "nope"\n[[shows]]\nid = "a"\ntitle = "A"\n')
    with pytest.raises(ConfigError, match="default_show 'nope' is not a configured show"):
        load_settings(tmp_path, env={})


def test_layers_environment_over_file_over_defaults(tmp_path: Path) -> None:
    write_config(tmp_path, "[ingest]\nsettle_seconds = 7\nmin_duration_s = 3\n")
    s = load_settings(tmp_path, env={"LEARNCAST_INGEST__SETTLE_SECONDS": "1.5"})
    assert s.ingest.settle_seconds == 1.5  # environment wins over the file
    assert s.ingest.min_duration_s == 3  # the file wins over the defaults
    assert s.ingest.max_duration_s == Settings().ingest.max_duration_s
    s = load_settings(tmp_path, env={}, overrides={"ingest": {"settle_seconds": 9}})
    assert s.ingest.settle_seconds == 9  # CLI overrides win over everything


def test_environment_errors_are_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="environment"):
        load_settings(tmp_path, env={"LEARNCAST_INGEST__SETTLE_SECONDS": "soon"})


@pytest.mark.parametrize("raw", ["1234567890" * 4, "0x1F2E3D4C5B6A79881726354453627180",
                                 "1_000_000_000_000_000_000_000_000_000_000", "1e400",
                                 "true", "2026-01-01", "007"])
def test_text_settings_from_the_environment_stay_text(tmp_path: Path, raw: str) -> None:
    """A token of digits (or anything TOML would read as a number, date or boolean) is kept
    exactly as set: text fields take the variable's value as it is."""
    s = load_settings(tmp_path, env={"LEARNCAST_REVIEW__TOKEN": raw})
    assert s.review.token == raw
    quoted = load_settings(tmp_path, env={"LEARNCAST_REVIEW__TOKEN": '"spaced value"'})
    assert quoted.review.token == "spaced value"  # a TOML string is still read as one


def test_init_refuses_to_overwrite(tmp_path: Path) -> None:
    config = init_workspace(tmp_path / "ws")
    config.write_text("# mine\n")
    with pytest.raises(ConfigError, match="already exists"):
        init_workspace(tmp_path / "ws")
    assert config.read_text() == "# mine\n"


def test_sound_settings_per_show(tmp_path: Path) -> None:
    write_config(tmp_path, '[loudness]\nleveler = false\nleveler_max_gain_db = 6\n'
                 '[[shows]]\nid = "a"\ntitle = "A"\nnoise_reduction = "light"\nhum = 50\n')
    s = load_settings(tmp_path, env={})
    assert s.loudness.leveler is False and s.loudness.leveler_max_gain_db == 6
    assert s.show("a").noise_reduction == "light" and s.show("a").hum == "50"  # 50 as a number
    assert Settings().loudness.leveler is True  # on by default: the shows are speech
    write_config(tmp_path, '[[shows]]\nid = "a"\ntitle = "A"\nhum = 55\n')
    with pytest.raises(ConfigError) as exc:
        load_settings(tmp_path, env={})
    assert "shows.0.hum" in str(exc.value) and "'auto', '50', '60' or 'off'" in str(exc.value)
    write_config(tmp_path, '[[shows]]\nid = "a"\ntitle = "A"\nnoise_reduction = "max"\n')
    with pytest.raises(ConfigError, match=r"shows\.0\.noise_reduction.*'off', 'light' or "
                                          r"'strong'"):
        load_settings(tmp_path, env={})


def test_transcribe_temperatures_must_increase_within_0_and_1(tmp_path: Path) -> None:
    write_config(tmp_path, "[transcribe]\ntemperatures = [0.0, 0.6, 0.2]\n")
    with pytest.raises(ConfigError) as exc:
        load_settings(tmp_path, env={})
    assert "transcribe" in str(exc.value) and "increasing order" in str(exc.value)
    write_config(tmp_path, "[transcribe]\ntemperatures = [0.0]\nvad = false\n")
    loaded = load_settings(tmp_path, env={}).transcribe
    assert loaded.temperatures == [0.0] and loaded.vad is False

def test_audiogram_and_highlight_settings_are_checked(tmp_path: Path) -> None:
    write_config(tmp_path, '[soundbites]\nmin_s = 50\nmax_s = 20\n')
    with pytest.raises(ConfigError, match=r"soundbites.min_s \(50.0\) must not exceed max_s"):
        load_settings(tmp_path, env={})
    write_config(tmp_path, '[[shows]]\nid = "a"\ntitle = "A"\naudiogram = "sometimes"\n')
    with pytest.raises(ConfigError, match=r"shows\.0\.audiogram"):
        load_settings(tmp_path, env={})
    write_config(tmp_path, '[audiogram]\nwidth = 1281\n')
    with pytest.raises(ConfigError, match=r"audiogram\.width"):
        load_settings(tmp_path, env={})
    write_config(tmp_path, '[[shows]]\nid = "a"\ntitle = "A"\nmedium = "video"\n'
                 '[[shows]]\nid = "b"\ntitle = "B"\naudiogram = true\n'
                 '[[shows]]\nid = "c"\ntitle = "C"\nmedium = "video"\naudiogram = false\n')
    shows = load_settings(tmp_path, env={}).shows
    assert [s.makes_audiograms for s in shows] == [True, True, False]


def test_the_shipped_config_lists_every_key() -> None:
    """config/learncast.toml is where a new user looks for what can be set: every section and
    key of the schema is in it (regenerate with `learncast config`, keep the sample show)."""
    shipped = tomllib.loads((REPO / "config" / "learncast.toml").read_text())
    complete = tomllib.loads(render_config(Settings()))
    missing = [f"{section}.{key}" for section, keys in complete.items()
               if isinstance(keys, dict) for key in keys if key not in shipped.get(section, {})]
    missing += [section for section in complete if section not in shipped]
    assert missing == [], f"config/learncast.toml lacks {missing}"
