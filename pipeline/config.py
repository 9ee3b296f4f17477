"""Settings: one schema, layered sources, validated once at start-up.

Precedence (lowest first): the defaults in this schema < `config/learncast.toml` in the
workspace < `LEARNCAST_<SECTION>__<KEY>` environment variables < CLI flags. Every key carries
a description; `learncast init` writes the documented config from this schema, so the
documentation cannot drift from what is accepted. Unknown keys are errors, never ignored.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from pipeline.errors import ConfigError
from pipeline.feeds.categories import category_problem

CONFIG_RELPATH = Path("config") / "learncast.toml"
ENV_PREFIX = "LEARNCAST_"
DEFAULT_PUBLIC_BASE_URL = "http://localhost:8080"
#: Secrets read only from the environment, by the code that uses them (`pipeline.notify`):
#: never settings, so `learncast config` cannot print them and no config file can hold them.
ENV_ONLY_SECRETS = {
    "smtp_user": "LEARNCAST_NOTIFY__SMTP_USER",
    "smtp_password": "LEARNCAST_NOTIFY__SMTP_PASSWORD",
    "webhook_secret": "LEARNCAST_NOTIFY__WEBHOOK_SECRET",
}
EMAIL_RE = re.compile(r"^[^@\s<>,;\"]+@[^@\s<>,;\"]+\.[^@\s<>,;\"]+$")


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PathsSettings(Section):
    """Workspace folders, relative to the workspace (absolute paths are allowed)."""

    inbox: str = Field("inbox", description="Producers drop recordings (and sidecars) here.")
    archive: str = Field("archive", description="Originals, kept byte-for-byte, never deleted.")
    work: str = Field("work", description="Intermediate files, one folder per episode.")
    failed: str = Field("failed", description="Rejected recordings with <name>.error.txt.")
    transcripts: str = Field("transcripts", description="Captions and transcripts per show.")
    feeds: str = Field("feeds", description="Generated RSS feeds per show.")
    public: str = Field("public", description="Root of the local storage backend.")
    state: str = Field("state/learncast.db", description="The SQLite state database.")


class IngestSettings(Section):
    """How the inbox is watched and what recordings are accepted."""

    settle_seconds: float = Field(
        2.0, ge=0, le=3600,
        description="A file is taken only once its size and mtime stayed the same for this long.",
    )
    wait_seconds: float = Field(
        120.0, ge=0,
        description="`learncast run` waits up to this long for files still being written; "
        "files still changing after that are left for the next run.",
    )
    min_duration_s: float = Field(1.0, ge=0, description="Shorter recordings are rejected.")
    max_duration_s: float = Field(
        4 * 3600.0, gt=0, description="Longer recordings are rejected (seconds)."
    )
    max_video_width: int = Field(
        7680, ge=16, le=65535,
        description="Wider video pictures are rejected, checked from the file's headers "
        "before any frame is decoded (a small file can hold a picture that takes gigabytes "
        "to decode).",
    )
    max_video_height: int = Field(
        7680, ge=16, le=65535, description="Taller video pictures are rejected (as above)."
    )
    max_video_pixels: int = Field(
        7680 * 4320, ge=256,
        description="Video pictures with more pixels (width x height) are rejected; the "
        "default is 8K UHD.",
    )
    max_artwork_pixels: int = Field(
        6000 * 6000, ge=1400 * 1400, le=50_000_000,
        description="Show artwork with more pixels is refused before it is decoded (Apple "
        "wants 1400-3000 px a side anyway).",
    )


class RunnerSettings(Section):
    """Retries and polling."""

    retry_attempts: int = Field(
        4, ge=1, le=20, description="Attempts per stage for transient faults (storage timeouts)."
    )
    retry_backoff_s: float = Field(
        2.0, ge=0, description="First retry delay; doubles on each attempt."
    )
    retry_backoff_max_s: float = Field(60.0, ge=0, description="Cap on the retry delay.")
    poll_seconds: float = Field(5.0, gt=0, description="How often `learncast watch` looks.")
    workers: int = Field(
        0, ge=0, le=64,
        description="Episodes processed at once (each worker loads its own ASR model); "
        "0 = one per CPU core.",
    )

    @property
    def worker_count(self) -> int:
        return self.workers or os.cpu_count() or 1


class FfmpegSettings(Section):
    """Which ffmpeg binary to run."""

    path: str = Field(
        "", description="Which ffmpeg runs: empty = the one bundled in imageio-ffmpeg (tested); "
        "`system` = `ffmpeg` on PATH; or a path to an ffmpeg binary (5.1 or newer; checked at "
        "start-up for everything the pipeline uses)."
    )


class StateSettings(Section):
    """Where episode state lives."""

    url: str = Field(
        "", description="Empty = the SQLite file paths.state (one machine); "
        "`postgresql://user:password@host:5432/db` = that PostgreSQL database, shared by every "
        "machine (better set as LEARNCAST_STATE__URL: it holds a password).")
    retry_seconds: float = Field(
        30.0, ge=0, le=3600, description="PostgreSQL: how long a call keeps reconnecting when "
        "the database is unreachable before it fails (and the stage is retried later).")

    @model_validator(mode="after")
    def _check_url(self) -> StateSettings:
        if self.url and not re.match(r"^postgres(ql)?(\+psycopg)?://", self.url):
            raise ValueError("state.url must be empty (SQLite under state/) or a "
                             "postgresql://user:password@host:5432/database URL")
        return self


class QueueSettings(Section):
    """Several machines: stages run as Celery tasks on a Redis broker (see README, Deployment)."""

    url: str = Field(
        "", description="Empty = the embedded runner (this machine does everything); "
        "`redis://host:6379/0` = Celery on that broker: `learncast worker` processes run the "
        "stages, `run`/`watch` ingest and enqueue.")
    lease_seconds: float = Field(
        120.0, ge=5, le=86400, description="A worker on another machine that has not renewed "
        "its claim on a stage for this long is taken for dead, and the stage runs elsewhere "
        "(workers renew every quarter of it; same-machine owners are checked directly).")
    visibility_timeout_s: float = Field(
        21600.0, ge=5, description="Redis: a task taken but not acknowledged for this long is "
        "handed out again (the state store keeps a stage from running twice at once).")
    work_prefix: str = Field(
        "learncast-work", pattern=r"^[A-Za-z0-9][A-Za-z0-9._~-]*$",
        description="Storage key prefix of the working copies that travel between workers "
        "(never referenced by a feed; removed when the episode is done). Keep it private.")
    poll_seconds: float = Field(
        1.0, gt=0, le=60, description="How often `run` and `watch` look at the state store for "
        "finished episodes and stalled stages.")

    @model_validator(mode="after")
    def _check_url(self) -> QueueSettings:
        if self.url and not re.match(r"^rediss?://", self.url):
            raise ValueError("queue.url must be empty (the embedded runner) or a Redis URL "
                             "such as redis://host:6379/0")
        return self


class PersonSettings(Section):
    """One person credited on a show (podcast:person)."""

    name: str = Field(min_length=1, max_length=128, description="The person's name.")
    role: str = Field("host", description="Podcasting 2.0 role (host, guest, producer, ...).")
    group: str = Field("cast", description="Podcasting 2.0 group (cast, crew, ...).")
    href: str = Field("", description="Web page about the person.")
    img: str = Field("", description="URL of a picture of the person.")


class ShowSettings(Section):
    """One podcast/video show. Episodes choose a show by id in their sidecar."""

    id: str = Field(
        pattern=r"^[a-z0-9][a-z0-9-]{0,62}$",
        description="Short ASCII id used in paths, object keys and sidecars.",
    )
    title: str = Field(min_length=1, max_length=255, description="Show title in podcast apps.")
    description: str = Field("", description="Show description in podcast apps.")
    author: str = Field("", description="Author/owner name shown in podcast apps.")
    language: str = Field("en", pattern=r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$",
                          description="BCP 47 language of the episodes (e.g. en, en-GB).")
    artwork: str = Field("assets/artwork.png", description="Square show artwork, JPEG or PNG, "
                         "1400-3000 px (workspace-relative path).")
    intro: str = Field("", description="Optional intro bumper (audio or video file in assets/).")
    outro: str = Field("", description="Optional outro bumper (audio or video file in assets/).")
    category: str = Field("Education", description="Apple Podcasts category (Apple's list, "
                          "e.g. Business, Education, Technology).")
    subcategory: str = Field("Courses", description="Apple Podcasts subcategory of `category` "
                             "(e.g. Courses, Self-Improvement); empty for none.")
    explicit: bool = Field(False, description="Whether the show contains explicit content "
                           "(itunes:explicit true/false).")
    type: Literal["episodic", "serial"] = Field(
        "episodic", description="episodic: newest first; serial: oldest first, every episode "
        "needs an episode number (courses, series meant to be heard in order).")
    medium: Literal["podcast", "video", "course"] = Field(
        "podcast", description="podcast:medium of the audio feed; course = training material, "
        "each item a session or chapter. The video feed says video unless this is course.")
    internal: bool = Field(False, description="Internal show: kept out of public directories "
                           "(itunes:block yes, podcast:locked yes unless `locked` says no).")
    locked: Literal["auto", "yes", "no"] = Field(
        "auto", description="podcast:locked (other platforms may not import the feed); "
        "auto = yes for internal shows, no otherwise.")
    feed_token: bool = Field(False, description="Put a random, unguessable token in the feed "
                             "URLs (kept once created), for internal shows.")
    owner_email: str = Field("", description="Owner e-mail (itunes:owner, podcast:locked owner); "
                             "directories use it to verify ownership.")
    copyright: str = Field("", description="Copyright line shown in podcast apps.")
    link: str = Field("", description="Show web page; empty = the feed URL.")
    persons: list[PersonSettings] = Field(
        default_factory=list, description="People credited on the show (podcast:person), as "
        "[[shows.persons]] tables with name, role, group, href, img.")
    review: Literal["auto", "after-approval", "immediate"] = Field(
        "auto", description="Caption review gate: after-approval = nothing is published until a "
        "reviewer approves the captions; immediate = publish at once, later edits republish; "
        "auto = the [review] default for the episode's kind (audio or video).")
    glossary: list[str] = Field(
        default_factory=list, max_length=500,
        description="Names and terms of this show (products, people, acronyms): fed to the "
        "speech recogniser and used to correct near-miss spellings; sidecars can add more.",
    )
    noise_reduction: Literal["off", "light", "strong"] = Field(
        "off", description="Broadband noise reduction (fans, hiss, air conditioning), learnt "
        "from each recording's quietest stretch: light takes up to 15 dB off the noise, strong "
        "up to 27 dB (more risk of watery speech).")
    hum: Literal["auto", "50", "60", "off"] = Field(
        "auto", description="Mains hum removal (notches at the hum frequency and its "
        "harmonics): auto = only when 50 or 60 Hz hum is found in the quietest stretch; "
        "50/60 = always, at that frequency.")
    producers: list[str] = Field(
        default_factory=list, max_length=50,
        description="E-mail addresses told when a recording of this show is rejected or "
        "fails (and, if [notify] events lists it, published), unless its sidecar names its "
        "own `producer`.")
    reviewers: list[str] = Field(
        default_factory=list, max_length=50,
        description="E-mail addresses told when an episode's captions await review, with a "
        "link to it on the review page.")
    webhooks: list[str] = Field(
        default_factory=list, max_length=20,
        description="URLs that get every notification of this show as a signed JSON POST "
        "(Teams/Slack workflows, an LMS); the signing secret comes from "
        "LEARNCAST_NOTIFY__WEBHOOK_SECRET.")
    private: bool = Field(
        False, description="Private show: every learner gets a personal feed URL (`learncast "
        "learners add`); feeds and media are served only with a valid, unrevoked token, "
        "never publicly. Implies internal.")
    learner_stats: bool = Field(
        False, description="Private shows: count downloads per learner too (personal data: "
        "say so in your privacy notice). Off = per-episode figures only.")

    @model_validator(mode="before")
    @classmethod
    def _private_is_internal(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("private") is True and "internal" not in data:
            return {**data, "internal": True}
        return data

    @field_validator("producers", "reviewers")
    @classmethod
    def _emails(cls, value: list[str]) -> list[str]:
        bad = [v for v in value if not EMAIL_RE.match(v)]
        if bad:
            raise ValueError(f"{', '.join(map(repr, bad))} is not an e-mail address; give "
                             "addresses like ana@example.com")
        return value

    @field_validator("webhooks")
    @classmethod
    def _urls(cls, value: list[str]) -> list[str]:
        bad = [v for v in value if not re.match(r"^https?://[^/\s]+(/\S*)?$", v)]
        if bad:
            raise ValueError(f"{', '.join(map(repr, bad))} is not an http:// or https:// URL")
        return value

    @model_validator(mode="after")
    def _learner_stats_need_private(self) -> ShowSettings:
        if self.learner_stats and not self.private:
            raise ValueError(f"show {self.id!r}: learner_stats = true needs private = true "
                             "(only personal feeds know who downloads)")
        return self

    @field_validator("hum", mode="before")
    @classmethod
    def _hum_number(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value

    audiogram: bool | Literal["auto"] = Field(
        "auto", description="Audio-only episodes also get an audiogram (MP4: artwork, level "
        "bars, title, burned-in captions) for the video feed, and their soundbites square "
        "audiogram videos. true, false, or auto = on when `medium` is video: a show that "
        "declares itself a video show has a video feed, and its audio episodes need a "
        "picture to appear there.")

    @property
    def makes_audiograms(self) -> bool:
        """Whether this show's audio-only episodes get audiograms (resolves `auto`)."""
        return self.audiogram is True or (self.audiogram == "auto" and self.medium == "video")

    @model_validator(mode="after")
    def _check_category(self) -> ShowSettings:
        problem = category_problem(self.category, self.subcategory)
        if problem:
            raise ValueError(problem)
        return self


class TrimSettings(Section):
    """Removing leading/trailing silence and room noise (and, optionally, long pauses)."""

    enabled: bool = Field(True, description="Trim silence/noise before the first and after "
                          "the last sound.")
    padding_s: float = Field(0.3, ge=0, le=5, description="Silence kept before the first and "
                             "after the last sound (seconds), so no word is clipped.")
    threshold_db: float = Field(12.0, ge=3, le=40, description="Sound = this many dB above "
                                "the recording's measured noise floor (not a fixed dBFS).")
    min_sound_s: float = Field(0.08, ge=0.01, le=2, description="Shorter bursts (clicks, "
                               "pops) do not count as the first or last sound.")
    shorten_pauses: bool = Field(False, description="Shorten internal pauses longer than "
                                 "max_pause_s to max_pause_s.")
    max_pause_s: float = Field(1.5, ge=0.2, le=30, description="Longest pause kept when "
                               "shorten_pauses is on (seconds).")
    keyframe_snap_s: float = Field(1.0, ge=0, le=10, description="Video: cut by stream copy "
                                   "(no picture re-encode) when a keyframe lies at most this "
                                   "far before the ideal start; 0 = always re-encode.")


class LoudnessSettings(Section):
    """Loudness normalisation (ITU-R BS.1770 / EBU R128), verified on the encoded files."""

    profile: Literal["apple-podcast", "aes-speech", "ebu-r128"] = Field(
        "apple-podcast", description="Target: apple-podcast -16 LUFS, aes-speech -18, "
        "ebu-r128 -23; integrated ±1 LU (R128 ±0.5), true peak ≤ -1 dBTP.")
    mono_variant: bool = Field(True, description="Mono deliverables use the profile's mono "
                               "variant (apple -19, aes -21 LUFS).")
    headroom_db: float = Field(1.0, ge=0, le=6, description="Extra true-peak margin in the "
                               "lossless master, for the overshoot lossy encoding adds.")
    leveler: bool = Field(True, description="Speech leveler: slow gain riding on speech only "
                          "(held in pauses), so speakers and sections come out equally loud "
                          "before the integrated target is applied; false = one linear gain.")
    leveler_max_gain_db: float = Field(
        12.0, ge=0, le=24, description="Most the leveler raises (or lowers) a stretch of "
        "speech relative to the recording's typical speech level (dB).")


class EncodeSettings(Section):
    """The deliverables: MP3 for the audio feed, MP4 (H.264/AAC) for video inputs."""

    mp3_bitrate_kbps: int = Field(128, ge=32, le=320, description="MP3 CBR bitrate, stereo.")
    mp3_mono_bitrate_kbps: int = Field(96, ge=32, le=320,
                                       description="MP3 CBR bitrate, mono recordings.")
    aac_bitrate_kbps: int = Field(160, ge=64, le=512, description="AAC bitrate in the MP4.")
    video_max_height: int = Field(1080, ge=144, le=2160, description="Taller video is "
                                  "downscaled to this height (aspect kept).")
    video_crf: int = Field(20, ge=0, le=51, description="x264 quality when the picture is "
                           "re-encoded (lower = better, bigger).")
    video_preset: Literal["ultrafast", "superfast", "veryfast", "faster", "fast", "medium",
                          "slow"] = Field("veryfast", description="x264 speed/size trade-off.")
    crossfade_s: float = Field(0.5, ge=0, le=5, description="Crossfade between bumpers and "
                               "the episode (seconds).")


class TranscribeSettings(Section):
    """Speech recognition (whisper): engine, model and quality guards."""

    engine: Literal["openai-whisper", "faster-whisper"] = Field(
        "openai-whisper", description="ASR engine; faster-whisper is about 3x faster on CPU.")
    model: str = Field(
        "tiny.en", min_length=1,
        description="Whisper model name (tiny.en, base.en, small, ...) or a path to a .pt "
        "checkpoint / CTranslate2 model folder. tiny.en works offline (bundled).",
    )
    models_dir: str = Field(
        "models", description="Converted and local models (workspace-relative).")
    compute_type: str = Field(
        "int8", description="faster-whisper weight type: int8, float32 or default.")
    threads: int = Field(
        0, ge=0, le=256, description="CPU threads of each worker's ASR engine; 0 = cores // "
        "runner.workers (at least 1), so the workers together never use more threads than "
        "there are cores.")
    language: str = Field(
        "", description="Spoken language (ISO 639-1); empty = the show's language. "
        "English-only models (*.en) always use en.",
    )
    beam_size: int = Field(5, ge=1, le=20, description="Beam search width; 1 = greedy (faster).")
    no_speech_threshold: float = Field(
        0.6, ge=0, le=1, description="Segments more likely silence than this (and with low "
        "confidence) are dropped.")
    logprob_threshold: float = Field(
        -1.0, le=0, description="Average log-probability below which a segment counts as "
        "low-confidence for the no-speech guard.")
    compression_ratio_threshold: float = Field(
        2.4, gt=1, description="Segments whose text compresses better than this (loops, "
        "repeated phrases) are dropped.")
    silence_dbfs: float = Field(
        -60.0, le=0, description="Audio quieter than this (per window, see window_minutes) is "
        "treated as silent: no recognition run on it; a recording silent throughout gets an "
        "empty transcript plus a warning.")
    window_minutes: float = Field(
        10.0, ge=0.5, le=180, description="Longer recordings are transcribed in windows of "
        "about this length, each cut at the quietest moment near its end, so memory stays "
        "flat however long the episode is.")
    glossary_similarity: float = Field(
        0.8, gt=0, le=1, description="How close (0-1) a recognised word must be to a glossary "
        "term to be respelled as that term.")
    vad: bool = Field(
        True, description="Decode only what voice activity detection (Silero VAD, shipped "
        "with faster-whisper) calls speech; pauses and room tone are never decoded, which "
        "is what makes whisper loop. false = decode everything.")
    vad_threshold: float = Field(
        0.5, ge=0.05, le=0.95, description="Speech probability above which a 32 ms frame is "
        "speech; lower it for very quiet or band-limited speech that gets missed.")
    temperatures: list[float] = Field(
        [0.0, 0.2, 0.4], min_length=1, max_length=6, description="Decoding temperatures "
        "tried in turn when a window's text looks wrong (too repetitive or unlikely); each "
        "is a full re-decode, so the list bounds the work.")
    hallucination_silence_s: float = Field(
        2.0, ge=0, description="Whisper skips silences longer than this around text that "
        "looks invented; 0 = off.")
    condition_on_previous_text: bool = Field(
        False, description="Give each chunk the text before it as its prompt (better "
        "continuity, but a loop then carries over into the next chunk).")

    @model_validator(mode="after")
    def _temperatures_in_order(self) -> TranscribeSettings:
        temps = self.temperatures
        if any(not 0 <= t <= 1 for t in temps) or list(temps) != sorted(set(temps)):
            raise ValueError(f"transcribe.temperatures = {temps} must be distinct values "
                             "from 0 to 1 in increasing order, e.g. [0.0, 0.2, 0.4]")
        return self


class SpeakerSettings(Section):
    """Speaker diarization: who speaks when, named in captions and transcripts."""

    enabled: bool = Field(
        True, description="Find who speaks when (offline, about 0.5 s of CPU per minute of "
        "audio) and name the speakers in captions and transcripts when there is more than "
        "one; a single voice gets no labels.")
    max_speakers: int = Field(6, ge=1, le=20, description="Never report more speakers than "
                              "this when counting them (a sidecar's `speakers` list sets the "
                              "count exactly).")
    threshold: float = Field(
        0.65, gt=0, lt=1, description="Two groups of speech whose voice embeddings are this "
        "alike on average (cosine) are one speaker. Lower finds fewer speakers.")
    ratio: float = Field(
        0.80, gt=0, lt=1, description="...or when they are this alike relative to how alike "
        "each is within itself (a noisy single voice varies more). Lower finds fewer.")
    min_speaker_s: float = Field(
        2.0, ge=0, le=600, description="A voice heard for less than this many seconds in all "
        "is counted as the most similar speaker, not a new one.")


class CaptionSettings(Section):
    """Captions and transcripts: style profile and QA thresholds."""

    profile: Literal["learncast", "netflix-en", "bbc", "dcmp-edu"] = Field(
        "learncast", description="Caption style profile (line length, reading speed, timing).")
    low_confidence: float = Field(
        0.6, ge=0, le=1, description="Words recognised with a probability below this (a "
        "decoder segment's first word: below a quarter of it), or whose neighbours and "
        "itself average below it, are listed in the QA report for review. 0.6 was chosen on "
        "the shared clips against the words actually wrong (`make bench SUITES=captions`).")


class ChapterSettings(Section):
    """Suggested chapters: topic shifts in the transcript of long episodes without chapters."""

    suggest: bool = Field(True, description="Suggest chapters for episodes whose sidecar has "
                          "none (marked suggested until a reviewer accepts them).")
    suggest_min_duration_s: float = Field(
        300.0, ge=0, description="Only episodes at least this long (seconds of content) get "
        "suggested chapters.")
    min_chapter_s: float = Field(
        0.0, ge=0, le=3600, description="Shortest suggested chapter (seconds); 0 = automatic, "
        "about a fifteenth of the episode (5 s to 5 minutes).")
    window_s: float = Field(
        0.0, ge=0, le=600, description="How much talk on each side of a sentence break is "
        "compared (seconds); 0 = automatic, about a sixth of the episode (15-90 s).")


class SoundbiteSettings(Section):
    """Soundbites: short shareable clips (MP3, podcast:soundbite), from the sidecar or chosen
    from the transcript."""

    count: int = Field(3, ge=0, le=3, description="Soundbites chosen from the transcript when "
                       "the sidecar gives none; 0 = none.")
    min_s: float = Field(15.0, ge=5, le=120, description="Shortest chosen soundbite (seconds).")
    max_s: float = Field(60.0, ge=5, le=120, description="Longest chosen soundbite (seconds).")
    fade_in_s: float = Field(0.2, ge=0, le=3, description="Fade-in at the clip's start.")
    fade_out_s: float = Field(0.5, ge=0, le=5, description="Fade-out at the clip's end.")

    @model_validator(mode="after")
    def _check_range(self) -> SoundbiteSettings:
        if self.min_s > self.max_s:
            raise ValueError(f"soundbites.min_s ({self.min_s}) must not exceed max_s "
                             f"({self.max_s})")
        return self


class AudiogramSettings(Section):
    """Audiograms (moviepy): how they look; encoding follows [encode] (H.264 CRF, preset,
    AAC bitrate)."""

    width: int = Field(1280, ge=320, le=1920, multiple_of=2,
                       description="Width of an episode's audiogram (pixels).")
    height: int = Field(720, ge=240, le=1080, multiple_of=2,
                        description="Height of an episode's audiogram (pixels).")
    square_px: int = Field(720, ge=240, le=1080, multiple_of=2,
                           description="Side of the square soundbite videos (pixels).")
    fps: float = Field(15.0, ge=5, le=30, description="Frame rate: the level bars move this "
                       "often; cost grows with it.")
    bars: int = Field(32, ge=8, le=96, description="Number of level bars (frequency bands).")
    font: str = Field("", description="TrueType/OpenType font file for title and captions; "
                      "empty = Pillow's built-in Aileron (Latin scripts only).")


class StorageSettings(Section):
    """Where published media, captions and feeds go."""

    backend: Literal["local", "s3"] = Field(
        "local", description="Storage backend: `local` publishes into paths.public (serve it "
        "with `learncast serve`); `s3` uploads to S3-compatible object storage.",
    )
    public_base_url: str = Field(
        DEFAULT_PUBLIC_BASE_URL,
        description="Base URL learners' apps fetch from; every URL in the feeds starts with it. "
        "For s3, the CDN or bucket URL that maps to the bucket root; left at the default, the "
        "bucket's own URL (endpoint_url/bucket) is used.",
    )
    bucket: str = Field("", description="s3: bucket name (required for the s3 backend).")
    prefix: str = Field(
        "", description="s3: key prefix inside the bucket (e.g. \"podcasts/\"); empty = root.",
    )
    endpoint_url: str = Field(
        "", description="s3: endpoint of an S3-compatible service (MinIO, R2, Ceph, Wasabi); "
        "empty = AWS S3.",
    )
    region: str = Field("", description="s3: region; empty = boto3's default chain "
                        "(AWS_REGION, profile), else us-east-1.")
    addressing_style: Literal["auto", "path", "virtual"] = Field(
        "auto", description="s3: bucket addressing in request URLs; MinIO and Ceph usually "
        "need `path`.",
    )
    acl: Literal["none", "public-read"] = Field(
        "none", description="s3: canned ACL for uploaded objects; `none` leaves access to the "
        "bucket policy (recommended; required for buckets with ACLs disabled).",
    )
    multipart_threshold_mb: int = Field(
        16, ge=5, le=5120, description="s3: files at least this large are uploaded in parts.",
    )
    multipart_chunk_mb: int = Field(
        16, ge=5, le=5120, description="s3: part size of multipart uploads (MiB).",
    )
    max_attempts: int = Field(
        3, ge=1, le=10, description="s3: attempts per request inside boto3 before a transient "
        "fault is handed to the runner's own retries.",
    )
    timeout_s: float = Field(
        60.0, gt=0, le=3600, description="s3: connect and read timeout per request (seconds).",
    )
    media_cache_control: str = Field(
        "public, max-age=31536000, immutable",
        description="Cache-Control of media, captions and chapters (their keys change with "
        "their content, so they never go stale).",
    )
    feed_cache_control: str = Field(
        "public, max-age=300", description="Cache-Control of feeds (short: they change).",
    )

    @model_validator(mode="after")
    def _check_s3(self) -> StorageSettings:
        for name in ("public_base_url", "endpoint_url"):
            value = getattr(self, name)
            if value and not re.match(r"^https?://[^/\s]+(/\S*)?$", value):
                raise ValueError(f"storage.{name} = {value!r} must be an absolute http:// or "
                                 "https:// URL (podcast apps need absolute URLs)")
        if self.backend == "s3" and not self.bucket:
            raise ValueError("storage.bucket is required when storage.backend = 's3'")
        if self.prefix and (self.prefix.startswith("/") or not self.prefix.isascii()):
            raise ValueError("storage.prefix must be ASCII and must not start with '/'")
        return self


class ReviewSettings(Section):
    """The caption review page (`learncast review`) and the publish gate."""

    video: Literal["after-approval", "immediate"] = Field(
        "after-approval", description="Gate for video episodes of shows that set no `review`.")
    audio: Literal["after-approval", "immediate"] = Field(
        "immediate", description="Gate for audio episodes of shows that set no `review`.")
    host: str = Field("127.0.0.1", description="Address `learncast review` listens on; any "
                      "address other than loopback requires `token`.")
    port: int = Field(8090, ge=1, le=65535, description="Port `learncast review` listens on.")
    token: str = Field("", description="Access token for the review page (better set as "
                       "LEARNCAST_REVIEW__TOKEN); required when not bound to loopback. At "
                       "least 32 random characters: python3 -c \"import secrets; "
                       "print(secrets.token_urlsafe(32))\".")


class NotifySettings(Section):
    """E-mail and webhook notifications to producers and reviewers (see README, Notifications)."""

    smtp_host: str = Field("", description="SMTP server for e-mail notifications; empty = no "
                           "e-mail. User and password only from LEARNCAST_NOTIFY__SMTP_USER / "
                           "LEARNCAST_NOTIFY__SMTP_PASSWORD, never from this file.")
    smtp_port: int = Field(0, ge=0, le=65535, description="SMTP port; 0 = by smtp_security "
                           "(none 25, starttls 587, ssl 465).")
    smtp_security: Literal["none", "starttls", "ssl"] = Field(
        "starttls", description="starttls: plain connection upgraded to TLS (refused if the "
        "server cannot); ssl: TLS from the start (SMTPS); none: no encryption (then no "
        "password is ever sent, except to this machine).")
    smtp_from: str = Field("", description="Sender address of notification e-mails "
                           "(required with smtp_host).")
    smtp_ca_file: str = Field("", description="PEM file of the CA that signed the SMTP "
                              "server's certificate (a company CA); empty = the system's.")
    timeout_s: float = Field(15.0, gt=0, le=300, description="Connect/read timeout of one "
                             "delivery (SMTP or webhook); a slower server is retried later.")
    events: list[Literal["rejected", "failed", "review", "published"]] = Field(
        ["rejected", "failed", "review"], description="What is notified: rejected (at the "
        "door), failed (in a stage), review (captions await a reviewer), published.")
    digest: Literal["off", "daily"] = Field(
        "off", description="daily: e-mails are collected into one message per recipient a "
        "day, sent at digest_hour; webhooks stay immediate.")
    digest_hour: int = Field(8, ge=0, le=23, description="Hour (UTC) the daily digest goes "
                             "out.")
    review_url: str = Field("", description="Address reviewers open the review page at, for "
                            "links in notifications (e.g. https://review.example.com/); empty "
                            "= from [review] host and port.")
    retry_backoff_s: float = Field(60.0, ge=0, description="First retry delay of a failed "
                                   "delivery; doubles on each attempt.")
    retry_backoff_max_s: float = Field(3600.0, ge=0, description="Cap on the retry delay.")
    max_attempts: int = Field(10, ge=1, le=50, description="Deliveries tried this often "
                              "before they are given up (and logged).")

    @model_validator(mode="before")
    @classmethod
    def _no_secrets_here(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for key, env in ENV_ONLY_SECRETS.items():
                if key in data:
                    raise ValueError(f"notify.{key} cannot be set in a config file; set the "
                                     f"environment variable {env} instead (it is never "
                                     "written down or logged)")
        return data

    @model_validator(mode="after")
    def _check(self) -> NotifySettings:
        if self.smtp_host and not EMAIL_RE.match(self.smtp_from):
            raise ValueError(f"notify.smtp_from = {self.smtp_from!r} must be an e-mail address "
                             "(the sender of notifications) when notify.smtp_host is set")
        if self.review_url and not re.match(r"^https?://[^/\s]+(/\S*)?$", self.review_url):
            raise ValueError(f"notify.review_url = {self.review_url!r} must be an http:// or "
                             "https:// URL")
        return self

    @property
    def port(self) -> int:
        return self.smtp_port or {"none": 25, "starttls": 587, "ssl": 465}[self.smtp_security]


class PrivateSettings(Section):
    """Private shows: personal feed URLs per learner (see README, Private shows)."""

    feed_base_url: str = Field(
        "", description="Where learners reach `learncast serve` (personal feed URLs start "
        "with it); empty = storage.public_base_url. Required for the s3 backend.")
    presign_seconds: int = Field(
        86400, ge=60, le=604800, description="s3: lifetime of the signed media URLs in a "
        "personal feed (at most 7 days); a revoked learner's links stop working after it.")

    @model_validator(mode="after")
    def _check(self) -> PrivateSettings:
        if self.feed_base_url and not re.match(r"^https?://[^/\s]+(/\S*)?$",
                                               self.feed_base_url):
            raise ValueError(f"private.feed_base_url = {self.feed_base_url!r} must be an "
                             "http:// or https:// URL")
        return self


class StatsSettings(Section):
    """Listening figures from access logs (see README, Listening figures). Off by default."""

    enabled: bool = Field(False, description="Record `learncast serve`'s access log (client "
                          "address, user agent, what was fetched) and count downloads from "
                          "it; off = no access log is written.")
    access_log: str = Field("logs", description="Folder of serve's access logs, one file a "
                            "day (workspace-relative).")
    keep_days: int = Field(30, ge=1, le=3650, description="Access logs (which hold client "
                           "addresses) are deleted after this many days; the daily counts "
                           "made from them are kept.")
    s3_logs: str = Field("", description="s3: where the bucket's server access logs are "
                         "delivered, as s3://bucket/prefix/ (counted too); empty = none.")
    window_hours: float = Field(24.0, gt=0, le=168, description="Requests from one client "
                                "(address + user agent) for one episode within this long "
                                "count once (IAB: 24 h).")
    min_seconds: float = Field(60.0, ge=0, le=3600, description="A download counts once this "
                               "much of the episode was sent (IAB: one minute; the whole file "
                               "when it is shorter).")

    @model_validator(mode="after")
    def _check(self) -> StatsSettings:
        if self.s3_logs and not re.match(r"^s3://[a-z0-9][a-z0-9.-]{1,62}(/\S*)?$",
                                         self.s3_logs):
            raise ValueError(f"stats.s3_logs = {self.s3_logs!r} must look like "
                             "s3://bucket/prefix/")
        return self


def _default_shows() -> list[ShowSettings]:
    return [ShowSettings(id="learning-weekly", title="Learning Weekly",
                         description="Weekly briefings and micro-learning from the L&D team.",
                         author="L&D Team")]


class Settings(Section):
    """All of Learncast's configuration."""

    paths: PathsSettings = PathsSettings()
    ingest: IngestSettings = IngestSettings()
    runner: RunnerSettings = RunnerSettings()
    ffmpeg: FfmpegSettings = FfmpegSettings()
    state: StateSettings = StateSettings()
    queue: QueueSettings = QueueSettings()
    storage: StorageSettings = StorageSettings()
    review: ReviewSettings = ReviewSettings()
    trim: TrimSettings = TrimSettings()
    loudness: LoudnessSettings = LoudnessSettings()
    encode: EncodeSettings = EncodeSettings()
    transcribe: TranscribeSettings = TranscribeSettings()
    speakers: SpeakerSettings = SpeakerSettings()
    captions: CaptionSettings = CaptionSettings()
    chapters: ChapterSettings = ChapterSettings()
    soundbites: SoundbiteSettings = SoundbiteSettings()
    audiogram: AudiogramSettings = AudiogramSettings()
    notify: NotifySettings = NotifySettings()
    private: PrivateSettings = PrivateSettings()
    stats: StatsSettings = StatsSettings()
    default_show: str = Field("", description="Show for recordings whose sidecar names none; "
                              "empty = the first show.")
    shows: list[ShowSettings] = Field(default_factory=_default_shows, min_length=1)

    @model_validator(mode="after")
    def _check_shows(self) -> Settings:
        ids = [s.id for s in self.shows]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"show ids must be unique; repeated: {', '.join(dupes)}")
        if (any(s.private for s in self.shows) and self.storage.backend == "s3"
                and not self.private.feed_base_url):
            raise ValueError("private.feed_base_url is required when a show is private and "
                             "storage.backend = 's3': personal feeds are served by `learncast "
                             "serve`; give the URL learners reach it at")
        if self.default_show and self.default_show not in ids:
            raise ValueError(
                f"default_show {self.default_show!r} is not a configured show "
                f"(configured: {', '.join(ids)})"
            )
        return self

    def show(self, show_id: str | None) -> ShowSettings:
        wanted = show_id or self.default_show or self.shows[0].id
        for s in self.shows:
            if s.id == wanted:
                return s
        raise KeyError(wanted)

    @property
    def show_ids(self) -> list[str]:
        return [s.id for s in self.shows]


def load_settings(
    workspace: Path,
    *,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Merge every layer and validate once; errors name the file, key, value and what is allowed."""
    path = workspace / CONFIG_RELPATH
    data: dict[str, Any] = {}
    source = "built-in defaults"
    if path.is_file():
        source = str(path)
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path}: not valid TOML ({exc}); fix the syntax") from exc
    env_data = _from_env(os.environ if env is None else env)
    if env_data:
        source += " + LEARNCAST_* environment"
    merged = _deep_merge(_deep_merge(data, env_data), dict(overrides or {}))
    try:
        return Settings.model_validate(merged)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(source, exc, merged)) from None


def format_validation_error(source: str, exc: ValidationError, data: Any = None) -> str:
    lines = [f"{source}: invalid configuration"]
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"]) or "(top level)"
        if err["type"] == "extra_forbidden":
            allowed = _allowed_keys(err["loc"][:-1], data)
            lines.append(f"  - unknown key '{key}'; allowed here: {', '.join(allowed)}")
        elif err["type"] == "missing":
            lines.append(f"  - '{key}' is required")
        else:
            value = err.get("input")
            shown = "" if isinstance(value, dict) else f" = {value!r}"
            lines.append(f"  - '{key}'{shown}: {err['msg']}")
    return "\n".join(lines)


def _allowed_keys(loc: tuple[Any, ...], data: Any) -> list[str]:
    model: type[BaseModel] = Settings
    for part in loc:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(str(part))
        if field is None:
            return []
        annotation = field.annotation
        inner = getattr(annotation, "__args__", None)
        candidate = inner[0] if inner else annotation
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            model = candidate
        else:
            return []
    return sorted(model.model_fields)


def _from_env(env: Mapping[str, str]) -> dict[str, Any]:
    """`LEARNCAST_INGEST__SETTLE_SECONDS=1` → {"ingest": {"settle_seconds": 1}}.

    Values are read as TOML when they parse (numbers, booleans, arrays), else as strings;
    a setting declared as text keeps the value as written (`LEARNCAST_REVIEW__TOKEN=0123...`).
    `LEARNCAST_WORKSPACE` is not a setting and is skipped.
    """
    out: dict[str, Any] = {}
    for name, raw in env.items():
        if not name.startswith(ENV_PREFIX) or "__" not in name:
            continue
        if name in ENV_ONLY_SECRETS.values():
            continue  # read where it is used, never a setting
        parts = [p.lower() for p in name[len(ENV_PREFIX):].split("__")]
        try:
            value: Any = tomllib.loads(f"v = {raw}")["v"]
        except tomllib.TOMLDecodeError:
            value = raw
        if not isinstance(value, str) and _is_text(parts):
            value = raw  # a token of digits stays the token, not a number
        node = out
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return out


def _is_text(parts: list[str]) -> bool:
    """Whether the setting at `parts` (section, key) is declared as plain text (`str`)."""
    model: Any = Settings
    for part in parts:
        field = getattr(model, "model_fields", {}).get(part)
        if field is None:
            return False
        model = field.annotation
    return model is str


def _deep_merge(base: dict[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


# --- the documented config file, generated from the schema -------------------------------


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        escaped = value.replace("\\", "\\\\").replace('"', '\\"')
        return f'"{escaped}"'
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {value!r} as TOML")


def _describe(field: Any) -> str:
    text = field.description or ""
    allowed = getattr(field.annotation, "__args__", None)
    if getattr(field.annotation, "__origin__", None) is Literal and allowed:
        text += f" One of: {', '.join(map(str, allowed))}."
    return text


def _section_lines(model: BaseModel) -> list[str]:
    lines: list[str] = []
    for name, field in type(model).model_fields.items():
        value = getattr(model, name)
        if isinstance(value, BaseModel) or (
            isinstance(value, list) and value and isinstance(value[0], BaseModel)
        ):
            continue
        desc = _describe(field)
        if desc:
            lines.append(f"# {desc}")
        lines.append(f"{name} = {_toml_value(value)}")
    return lines


def render_config(settings: Settings | None = None) -> str:
    """A complete, commented `learncast.toml` for `settings` (defaults when None)."""
    settings = settings or Settings()
    out = [
        "# Learncast configuration. Every key is listed with its default and meaning.",
        "# Environment variables override it: LEARNCAST_<SECTION>__<KEY>=value",
        "# (e.g. LEARNCAST_INGEST__SETTLE_SECONDS=5). Unknown keys are errors.",
        "",
    ]
    out += _section_lines(settings)
    for name, field in Settings.model_fields.items():
        value = getattr(settings, name)
        if isinstance(value, BaseModel):
            out += ["", f"[{name}]"]
            if type(value).__doc__:
                out.append(f"# {type(value).__doc__.strip().splitlines()[0]}")
            out += _section_lines(value)
        elif isinstance(value, list) and value and isinstance(value[0], BaseModel):
            doc = (field.annotation.__args__[0].__doc__ or "").strip()  # type: ignore[union-attr]
            for item in value:
                out += ["", f"[[{name}]]"]
                if doc:
                    out.append(f"# {doc.splitlines()[0]}")
                out += _section_lines(item) + _nested_tables(name, item)
    return "\n".join(out) + "\n"


def _nested_tables(prefix: str, model: BaseModel) -> list[str]:
    """Lists of tables inside an entry (a show's `[[shows.persons]]`), after its own keys:
    without them `learncast config` left out part of the effective configuration."""
    out: list[str] = []
    for name in type(model).model_fields:
        value = getattr(model, name)
        if not (isinstance(value, list) and value and isinstance(value[0], BaseModel)):
            continue
        doc = (type(value[0]).__doc__ or "").strip()
        for item in value:
            out += ["", f"[[{prefix}.{name}]]"]
            if doc:
                out.append(f"# {doc.splitlines()[0]}")
            out += _section_lines(item) + _nested_tables(f"{prefix}.{name}", item)
    return out


def render_reference() -> str:
    """The configuration reference as a Markdown table, for the README (kept in sync by a test)."""
    rows = ["| key | default | meaning |", "|---|---|---|"]

    def add(prefix: str, model: type[BaseModel], instance: BaseModel) -> None:
        for name, field in model.model_fields.items():
            value = getattr(instance, name)
            if isinstance(value, BaseModel):
                add(f"{prefix}{name}.", type(value), value)
            elif isinstance(value, list) and value and isinstance(value[0], BaseModel):
                add(f"{prefix}{name}[].", type(value[0]), value[0])
            else:
                shown = _toml_value(value).replace("|", "\\|")
                desc = _describe(field).replace("|", "\\|")
                rows.append(f"| `{prefix}{name}` | `{shown}` | {desc} |")

    add("", Settings, Settings())
    return "\n".join(rows) + "\n"
