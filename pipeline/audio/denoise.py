"""Noise reduction for speech: stationary noise (fans, hiss) and mains hum, learnt from the
recording's own quietest stretch.

Both parts are ffmpeg filters that stream, chosen by measurement on the sound bench
(`bench/sound.py`: 104 s of reference speech at -20 LUFS over pink or brown noise at
-35 dBFS, or 50 Hz hum with harmonics):

- **Broadband** (`noise_reduction = "light" | "strong"`): `afftdn` with a noise profile
  sampled from the quietest stretch. The stretch is played to afftdn first as a pre-roll
  (`concat` of a seeked second input, `asendcmd` switching `sample_noise` on and off),
  then cut away again with `atrim`, so the profile is known from the first sample of the
  recording on. afftdn's `noise_floor` is set from that stretch's measured RMS level plus
  5 dB: the sampled profile gives afftdn the shape of the noise, `noise_floor` its level,
  and without it afftdn assumes -50 dB and leaves louder noise alone. Measured, noise floor
  relative to the speech: afftdn at its defaults -1 dB (pink), tracking (`tn=1`) -0 to -10 dB
  depending on the level, a profile with afftdn's default floor -0.2 dB; profile + measured
  floor -12 dB (light, `nr=12`) and -20 to -24 dB (strong, `nr=24`) for pink, brown and white
  noise at -35 and -50 dBFS alike, with the same figures from Debian 12's ffmpeg 5.1 and the
  bundled one. afftdn delays its output by two of its 12.5 ms hops; the pre-roll cut removes
  that too, so speech keeps its timing (lip sync).
- **Hum** (`hum = "auto" | "50" | "60"`): the spectrum of the quiet stretch (0.25 Hz bins)
  shows whether 50 or 60 Hz harmonics stand out from their neighbourhood; each harmonic that
  does (up to 1.2 kHz) gets a `bandreject` notch 4 Hz wide. Constant-width notches take
  less of the voice's own harmonics than constant-Q ones (at Q 30 the notch at 550 Hz is
  18 Hz wide). Measured: -37 dB of hum; afftdn alone removes 2 dB of it, because its noise
  profile has 15 bands and hum is a few lines.

A recording without a noise-only stretch (0.6 s or more within 4 dB of its quietest level,
not speech, and 10 LU or more below the integrated loudness) gets no broadband reduction,
and the report says why: learning "noise" from a stretch that holds speech would eat the
speech. Nor does one whose only noise was hum: what the notches leave is their tonal residue
(see HUM_RESIDUE_BELOW_SPEECH_DB), which afftdn cannot remove without taking speech with it.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.audio.leveler import speech_frames
from pipeline.audio.loudness import MOMENTARY_S, LoudnessSeries
from pipeline.errors import PipelineError
from pipeline.ffmpeg import run

log = logging.getLogger(__name__)

#: afftdn's `noise_reduction` (dB) per setting.
REDUCTION_DB = {"light": 15.0, "strong": 27.0}
#: afftdn's noise floor is set this far above the quiet stretch's RMS level.
FLOOR_OFFSET_DB = 5.0
#: The quiet stretch: frames within this of the quietest, at least / at most this long.
QUIET_WITHIN_DB = 4.0
MIN_STRETCH_S = 0.6
MAX_STRETCH_S = 3.0
#: ... and at least this far below the speech, or it may not be noise alone.
MIN_SNR_LU = 10.0
#: When hum was notched out and what is left is this far below the speech, it is the
#: notches' residue (tonal), not broadband noise: afftdn on it (speech at -20 LUFS over
#: 50 Hz hum at -35 dBFS, residue 36 dB below) cost tiny.en 2-5 words in 215 across
#: jittered copies of the same master, with nothing audible removed. Broadband noise at
#: -35 dBFS under the hum leaves a residue about 15 dB below the speech.
HUM_RESIDUE_BELOW_SPEECH_DB = 30.0
#: Hum: harmonics examined, prominence that counts as hum, notch width.
HUM_MAX_HZ = 1200.0
HUM_PROMINENCE_DB = 10.0
HUM_NOTCH_PROMINENCE_DB = 6.0
NOTCH_WIDTH_HZ = 6.0
SPECTRUM_RATE = 8000


@dataclass(frozen=True)
class QuietStretch:
    """The longest stretch (capped) of the recording near its quietest level."""

    start_s: float
    end_s: float
    level_lufs: float  # power mean of the momentary loudness over it

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s


def quiet_stretch(series: LoudnessSeries) -> QuietStretch | None:
    """Where the recording is noise alone, found from the frame log; None if nowhere is."""
    valid = (series.t >= MOMENTARY_S - 1e-3) & np.isfinite(series.momentary)
    if valid.sum() < 2:
        return None
    m = np.where(valid, np.maximum(series.momentary, -120.0), np.inf)
    quietest = float(np.percentile(m[valid], 5))
    quiet = valid & (m <= quietest + QUIET_WITHIN_DB)
    speech = speech_frames(series).mask
    quiet &= ~speech
    best: tuple[int, int] | None = None
    padded = np.concatenate([[False], quiet, [False]]).astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    for a, b in zip(edges[::2], edges[1::2], strict=True):
        if best is None or b - a > best[1] - best[0]:
            best = (int(a), int(b))
    if best is None:
        return None
    a, b = best
    start = float(series.t[a]) - MOMENTARY_S  # frame a's block starts 400 ms before its end
    end = float(series.t[b - 1])
    if end - start < MIN_STRETCH_S:
        return None
    if end - start > MAX_STRETCH_S:
        middle = (start + end) / 2
        start, end = middle - MAX_STRETCH_S / 2, middle + MAX_STRETCH_S / 2
    sel = valid & (series.t - MOMENTARY_S >= start - 1e-6) & (series.t <= end + 1e-6)
    level = float(10 * np.log10(np.mean(10 ** (m[sel] / 10)))) if sel.any() else quietest
    if series.loudness.integrated - level < MIN_SNR_LU:
        return None
    return QuietStretch(round(max(start, 0.0), 3), round(end, 3), round(level, 2))


@dataclass(frozen=True)
class Hum:
    """Mains hum found (or set): its fundamental and the harmonics to notch."""

    frequency: int  # 50 or 60
    harmonics: tuple[int, ...]  # multiples of `frequency` to notch
    prominence_db: float | None  # strongest harmonic above its neighbourhood (None: forced)
    detected: bool

    def filters(self) -> list[str]:
        return [f"bandreject=f={self.frequency * k}:width_type=h:width={NOTCH_WIDTH_HZ:g}"
                for k in self.harmonics]


def _prominence(power: np.ndarray, freqs: np.ndarray, f: float) -> float:
    """How far the line at `f` (±1 Hz) stands above its neighbourhood (±4..15 Hz), in dB."""
    line = power[np.abs(freqs - f) <= 1.0]
    near = power[(np.abs(freqs - f) >= 4.0) & (np.abs(freqs - f) <= 15.0)]
    if len(line) == 0 or len(near) == 0:
        return 0.0
    return float(10 * np.log10(max(float(line.max()), 1e-30)
                               / max(float(np.median(near)), 1e-30)))


def hum_spectrum(samples: np.ndarray, rate: int) -> tuple[np.ndarray, np.ndarray]:
    """Power spectrum (Hann window, zero-padded to 0.25 Hz bins) of a short mono stretch."""
    window = np.hanning(len(samples))
    n = max(int(2 ** np.ceil(np.log2(rate * 4))), len(samples))
    power = np.abs(np.fft.rfft(samples * window, n)) ** 2
    return np.fft.rfftfreq(n, 1.0 / rate), power


def detect_hum(samples: np.ndarray, rate: int, setting: str) -> Hum | None:
    """50 or 60 Hz hum in a noise-only stretch: whichever family of harmonics stands out
    more (multiples of 300 Hz belong to both and are not counted); `setting` "50"/"60"
    forces the family and only picks the harmonics."""
    if len(samples) < rate // 4:
        return None
    freqs, power = hum_spectrum(samples.astype(np.float64), rate)
    found: dict[int, tuple[float, list[tuple[int, float]]]] = {}
    for f0 in (50, 60):
        lines = [(k, _prominence(power, freqs, f0 * k))
                 for k in range(1, int(HUM_MAX_HZ // f0) + 1)]
        own = [p for k, p in lines if (f0 * k) % 300 != 0]
        score = sum(1 for p in own if p >= HUM_PROMINENCE_DB)
        found[f0] = (score + (1 if lines[0][1] >= HUM_PROMINENCE_DB else 0), lines)
    if setting in ("50", "60"):
        f0 = int(setting)
    else:
        f0 = max(found, key=lambda f: found[f][0])
        if found[f0][0] < 2 or found[f0][0] <= found[110 - f0][0]:
            return None
    lines = found[f0][1]
    notch = tuple(k for k, p in lines if p >= HUM_NOTCH_PROMINENCE_DB)
    if setting in ("50", "60") and not notch:
        notch = tuple(range(1, 9))
    strongest = max((p for _, p in lines), default=0.0)
    return Hum(f0, notch, round(strongest, 1), setting == "auto")


@dataclass(frozen=True)
class DenoisePlan:
    """What noise reduction will do to one recording, and the filter graph pieces for it."""

    mode: str  # off | light | strong
    hum_setting: str  # auto | 50 | 60 | off
    stretch: QuietStretch | None = None
    hum: Hum | None = None
    noise_rms_dbfs: float | None = None  # the stretch's RMS after hum removal
    reduction_db: float = 0.0  # afftdn noise_reduction, 0 = no broadband reduction
    floor_db: float | None = None  # afftdn noise_floor
    notes: list[str] = field(default_factory=list)

    @property
    def broadband(self) -> bool:
        return self.reduction_db > 0 and self.stretch is not None

    @property
    def active(self) -> bool:
        return self.broadband or self.hum is not None

    def delay_samples(self, rate: int) -> int:
        """Samples afftdn delays its output by: two hops of rate/80 (see af_afftdn.c)."""
        return 2 * (rate // 80) if self.broadband else 0

    def graph(self, source: str, rate: int, preroll_input: int) -> tuple[str, str]:
        """Filter-graph text taking `source` (a pad label) to `[dn]`, and the label.

        When broadband, input `preroll_input` must be the quiet stretch (see `inputs`).
        """
        notches = self.hum.filters() if self.hum else []
        if not self.broadband:
            return f"{source}{','.join(notches)}[dn]", "[dn]"
        assert self.stretch is not None
        pre = round(self.stretch.duration_s * rate)
        delay = self.delay_samples(rate)
        cmd = (f"asendcmd=c='0.0 afftdn@dn sn start\\; {pre / rate:.6f} afftdn@dn sn stop'")
        chain = [f"[{preroll_input}:a]atrim=end_sample={pre},asetpts=N/SR/TB[pre]",
                 f"[pre]{source}concat=n=2:v=0:a=1,apad=pad_len={delay},"
                 + ",".join([*notches, cmd,
                             f"afftdn@dn=nr={self.reduction_db:g}:nf={self.floor_db:g}",
                             f"atrim=start_sample={pre + delay}",
                             "asetpts=PTS-STARTPTS"]) + "[dn]"]
        return ";".join(chain), "[dn]"

    def inputs(self, path: Path) -> list[str]:
        """Extra ffmpeg inputs the graph needs: the quiet stretch, seeked (not decoded from
        the start, and not held back in memory while the pre-roll plays)."""
        if not self.broadband:
            return []
        assert self.stretch is not None
        return ["-ss", f"{self.stretch.start_s:.3f}", "-t", f"{self.stretch.duration_s + 0.5:.3f}",
                "-i", str(path)]

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"mode": self.mode, "hum_setting": self.hum_setting,
                               "broadband": self.broadband, "notes": list(self.notes)}
        if self.stretch:
            out["quiet_stretch"] = {"start_s": self.stretch.start_s,
                                    "end_s": self.stretch.end_s,
                                    "level_lufs": self.stretch.level_lufs}
        if self.noise_rms_dbfs is not None:
            out["noise_rms_dbfs"] = round(self.noise_rms_dbfs, 1)
        if self.broadband:
            out["afftdn"] = {"noise_reduction_db": self.reduction_db,
                             "noise_floor_db": self.floor_db}
        out["hum"] = ({"frequency_hz": self.hum.frequency, "harmonics": list(self.hum.harmonics),
                       "prominence_db": self.hum.prominence_db, "detected": self.hum.detected}
                      if self.hum else None)
        return out


def _stretch_samples(ffmpeg: str, path: Path, stretch: QuietStretch, *, rate: int | None,
                     mono: bool, chain: str = "") -> np.ndarray:
    """The quiet stretch decoded (float32; channels interleaved unless `mono`)."""
    args = ["-ss", f"{stretch.start_s:.3f}", "-t", f"{stretch.duration_s:.3f}", "-i", str(path),
            "-map", "0:a:0", *(["-af", chain] if chain else []), *(["-ac", "1"] if mono else []),
            *(["-ar", str(rate)] if rate else []), "-f", "f32le", "-acodec", "pcm_f32le", "-"]
    what = f"decoding the quiet stretch of {path.name} for noise analysis"
    with tempfile.TemporaryFile() as out:  # a few seconds of audio: a file, no pipe to drain
        result = run(ffmpeg, args, what=what, stdout=out)
        if result.returncode != 0:
            raise PipelineError(f"ffmpeg could not decode the quiet stretch of {path.name} for "
                                f"noise analysis: {result.first_error}. Check that the file is "
                                "intact, then run `learncast retry`")
        out.seek(0)
        return np.frombuffer(out.read(), dtype="<f4")


def plan(ffmpeg: str, path: Path, series: LoudnessSeries, *, mode: str, hum: str,
         channels: int) -> DenoisePlan:
    """Decide what to remove from `path`: find its quiet stretch, hum in it, its level."""
    notes: list[str] = []
    if mode == "off" and hum == "off":
        return DenoisePlan(mode, hum)
    stretch = quiet_stretch(series)
    found: Hum | None = None
    if stretch is None:
        notes.append("no noise-only stretch (0.6 s or more, 10 LU below the speech) to learn "
                     "the noise from: broadband noise reduction and hum detection skipped")
        if hum in ("50", "60"):
            found = Hum(int(hum), tuple(range(1, 9)), None, False)
        return DenoisePlan(mode, hum, None, found, notes=notes)
    if hum != "off":
        found = detect_hum(_stretch_samples(ffmpeg, path, stretch, rate=SPECTRUM_RATE,
                                            mono=True), SPECTRUM_RATE, hum)
        if found is None and hum == "auto":
            notes.append("no mains hum found")
    if mode == "off":
        return DenoisePlan(mode, hum, stretch, found, notes=notes)
    chain = ",".join(found.filters()) if found else ""
    raw = _stretch_samples(ffmpeg, path, stretch, rate=None, mono=False, chain=chain)
    frames = raw.reshape(-1, channels) if channels > 1 and len(raw) % channels == 0 else \
        raw.reshape(-1, 1)
    rms = np.sqrt(np.mean(frames.astype(np.float64) ** 2, axis=0))
    level = float(20 * np.log10(max(float(rms.max()), 1e-9)))
    below = series.loudness.integrated - level
    if found and below >= HUM_RESIDUE_BELOW_SPEECH_DB:
        notes.append(f"after hum removal the noise is {below:.0f} dB below the speech: what is "
                     "left is the notches' residue of the hum, not broadband noise, so "
                     "broadband noise reduction is skipped (it would cost speech clarity)")
        return DenoisePlan(mode, hum, stretch, found, level, notes=notes)
    floor = float(np.clip(round(level + FLOOR_OFFSET_DB), -80, -20))
    return DenoisePlan(mode, hum, stretch, found, level, REDUCTION_DB[mode], floor, notes)
