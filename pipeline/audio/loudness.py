"""Loudness measurement (ITU-R BS.1770 / EBU R128) and the named delivery profiles.

Measurement runs ffmpeg's `ebur128` filter with true-peak enabled: one streaming pass that
reports integrated loudness, loudness range and true peak (4x oversampled), without holding
the decoded audio anywhere. Normalisation is planned here too, so the normalise stage and the
bumper matching in encode apply exactly the same rules: a linear gain when the true peak
allows it, otherwise the gain plus a true-peak limiter (run oversampled) — and the caller is
told which, so it can record it. ffmpeg's `loudnorm` is deliberately not used to *apply* gain:
it silently switches from linear to dynamic mode and resamples to 192 kHz.
"""

from __future__ import annotations

import logging
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.errors import PipelineError
from pipeline.ffmpeg import Result, run

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Profile:
    """A delivery target: integrated loudness ± tolerance, and a true-peak ceiling."""

    name: str
    integrated: float
    true_peak: float
    tolerance: float
    mono: str | None = None  # the profile used instead for mono deliverables

    def misses(self, got: Loudness) -> str | None:
        """Why `got` falls outside this target (for an error message), or None if it meets it:
        every deliverable is re-measured against the same rule."""
        if abs(got.integrated - self.integrated) <= self.tolerance \
                and got.true_peak <= self.true_peak:
            return None
        return (f"misses the {self.name} loudness target: measured {got} (target "
                f"{self.integrated:.1f} ±{self.tolerance:.1f} LUFS, true peak "
                f"≤ {self.true_peak:.1f} dBTP)")


#: The named profiles (`[loudness] profile`). Mono variants sit 3 LU lower where the
#: guideline says so (Apple: -16 stereo / -19 mono), because a mono file is played on both
#: speakers and sounds about 3 LU louder than it measures.
PROFILES: dict[str, Profile] = {
    "apple-podcast": Profile("apple-podcast", -16.0, -1.0, 1.0, mono="apple-podcast-mono"),
    "apple-podcast-mono": Profile("apple-podcast-mono", -19.0, -1.0, 1.0),
    "aes-speech": Profile("aes-speech", -18.0, -1.0, 1.0, mono="aes-speech-mono"),
    "aes-speech-mono": Profile("aes-speech-mono", -21.0, -1.0, 1.0),
    "ebu-r128": Profile("ebu-r128", -23.0, -1.0, 0.5, mono="ebu-r128-mono"),
    "ebu-r128-mono": Profile("ebu-r128-mono", -23.0, -1.0, 0.5),
}


def profile_for(name: str, *, mono: bool, mono_variant: bool = True) -> Profile:
    """The profile to deliver to: the named one, or its mono variant for mono deliverables."""
    try:
        profile = PROFILES[name]
    except KeyError:
        raise PipelineError(f"unknown loudness profile {name!r}; choose one of "
                            f"{', '.join(PROFILES)} in [loudness] profile") from None
    if mono and mono_variant and profile.mono:
        return PROFILES[profile.mono]
    return profile


@dataclass(frozen=True)
class Loudness:
    """BS.1770 figures of one file: integrated (LUFS), true peak (dBTP), range (LU)."""

    integrated: float
    true_peak: float
    lra: float

    def to_dict(self) -> dict[str, float]:
        return {k: round(v, 2) for k, v in asdict(self).items()}

    def rounded(self) -> Loudness:
        return Loudness(**self.to_dict())

    def __str__(self) -> str:
        return f"{self.integrated:.1f} LUFS, {self.true_peak:.1f} dBTP, LRA {self.lra:.1f} LU"


#: Below this the gates of BS.1770 leave nothing to measure (ebur128 prints -70).
SILENT_LUFS = -69.5

_SUMMARY = re.compile(
    r"Integrated loudness:\s*I:\s*(?P<i>[-\w.]+) LUFS.*?"
    r"Loudness range:\s*LRA:\s*(?P<lra>[-\w.]+) LU.*?"
    r"True peak:\s*Peak:\s*(?P<tp>[-\w.]+) dBFS",
    re.S,
)


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:  # "-inf" for digital silence
        return float("-inf")


def measure(ffmpeg: str, path: Path, *, stream: str = "a:0") -> Loudness:
    """Measure `path` (audio stream `stream`) in one streaming pass of ffmpeg's ebur128.

    `framelog=verbose` sends ebur128's line per 100 ms frame to the verbose level, which the
    info level we run at does not print: only the summary is read (and kept), whatever the
    recording's length. (`framelog=quiet` would say so more plainly, but ffmpeg 5.1 lacks it;
    left at its default, ebur128 logs every frame at info: 36,000 lines for an hour.)
    """
    result = run(ffmpeg, ["-i", str(path), "-map", f"0:{stream}", "-vn", "-sn", "-dn",
                          "-af", "ebur128=peak=true:framelog=verbose", "-f", "null", "-"],
                 what=f"measuring the loudness of {path.name}", loglevel="info",
                 keep_after="Summary:")
    return _summary(result, path.name)


def _summary(result: Result, name: str) -> Loudness:
    """The figures of ebur128's summary in a run's kept log (`keep_after="Summary:"`)."""
    match = _SUMMARY.search("\n".join(result.log.kept)) if result.returncode == 0 else None
    if not match:
        raise PipelineError(f"could not measure the loudness of {name}: ffmpeg said "
                            f"\"{result.first_error}\" (exit {result.returncode}). Check that "
                            "the file plays; if it does, report this with the file attached")
    return Loudness(integrated=_number(match["i"]), true_peak=_number(match["tp"]),
                    lra=_number(match["lra"]))


#: ebur128 reports every 100 ms; momentary loudness covers the last 400 ms, short-term 3 s.
FRAME_S = 0.1
MOMENTARY_S = 0.4
_FRAME = re.compile(r"t:\s*(?P<t>[\d.]+)\s+TARGET:.*?M:\s*(?P<m>-?[\d.]+|-?inf|nan)\s+"
                    r"S:\s*(?P<s>-?[\d.]+|-?inf|nan)"
                    r"(?:.*?FTPK:\s*(?P<ftpk>[-\d.\sinf]+?)\s*dBFS)?")


@dataclass(frozen=True)
class LoudnessSeries:
    """ebur128's frame log of one file: every 100 ms, the momentary (400 ms) and short-term
    (3 s) loudness ending there, and the frame's true peak (highest channel).

    An hour is 36,000 frames, three float arrays (under 1 MB): the leveler plans its gain
    curve from them and the sound report compares before with after, without the audio.
    """

    loudness: Loudness
    t: np.ndarray  # end of each frame (s)
    momentary: np.ndarray  # LUFS
    short_term: np.ndarray  # LUFS
    frame_peak: np.ndarray  # dBTP (dBFS when measured without true peak)

    @property
    def duration_s(self) -> float:
        return float(self.t[-1]) if len(self.t) else 0.0

    def shifted(self, gain_db: float) -> LoudnessSeries:
        """The same file after a linear gain (exact: every figure moves by the gain)."""
        lo = self.loudness
        return LoudnessSeries(Loudness(lo.integrated + gain_db, lo.true_peak + gain_db, lo.lra),
                              self.t, self.momentary + gain_db, self.short_term + gain_db,
                              self.frame_peak + gain_db)


class _FrameLog:
    """Collects ebur128's frame lines as ffmpeg prints them (never the whole log as text)."""

    def __init__(self) -> None:
        self.rows: list[tuple[float, float, float, float]] = []

    def feed(self, line: str) -> None:
        m = _FRAME.search(line)
        if m:
            peaks = [_number(p) for p in (m["ftpk"] or "").split()]
            self.rows.append((float(m["t"]), _number(m["m"]), _number(m["s"]),
                              max(peaks) if peaks else float("nan")))

    def series(self, loudness: Loudness) -> LoudnessSeries:
        data = np.array(self.rows, dtype=np.float64).reshape(-1, 4)
        return LoudnessSeries(loudness, data[:, 0], data[:, 1], data[:, 2], data[:, 3])


def series_filter() -> str:
    """The ebur128 instance whose frame log `run_series` reads (pass-through audio)."""
    return "ebur128=framelog=info:peak=true"


def run_series(ffmpeg: str, args: list[str], *, what: str, name: str) -> LoudnessSeries:
    """Run an ffmpeg command whose filter chain ends in `series_filter()` (measuring alone,
    or rendering while measuring what is written) and return the series it logged."""
    frames = _FrameLog()
    result = run(ffmpeg, args, what=what, loglevel="info", keep_after="Summary:",
                 on_line=frames.feed)
    if result.returncode != 0:
        raise result.error(what)
    return frames.series(_summary(result, name))


def measure_series(ffmpeg: str, path: Path, *, stream: str = "a:0") -> LoudnessSeries:
    """Integrated, true peak and range like `measure`, plus the 100 ms frame log, in the same
    single streaming pass (frames are parsed as they arrive: 36,000 rows for an hour)."""
    return run_series(ffmpeg, ["-i", str(path), "-map", f"0:{stream}", "-vn", "-sn", "-dn",
                               "-af", series_filter(), "-f", "null", "-"],
                      what=f"measuring the loudness of {path.name}", name=path.name)


def require_audible(measured: Loudness) -> None:
    """Refuse a recording with nothing to normalise (BS.1770's gates leave nothing)."""
    if measured.integrated <= SILENT_LUFS:
        raise PipelineError(
            f"the recording is silent or nearly so ({measured}); there is nothing to bring "
            "to a listening level. Check the microphone/track selection and record again")


@dataclass(frozen=True)
class GainPlan:
    """How to bring a measured file to a profile: the filter, and what it will do."""

    gain_db: float
    limited: bool
    ceiling_db: float
    filter: str

    def to_dict(self) -> dict[str, Any]:
        return {"gain_db": round(self.gain_db, 2), "limited": self.limited,
                "ceiling_db": round(self.ceiling_db, 2)}


def plan_gain(measured: Loudness, profile: Profile, *, rate: int, headroom_db: float,
              extra_gain_db: float = 0.0, peak_margin_db: float = 0.0) -> GainPlan:
    """Linear gain to the target; add a true-peak limiter only when the peak would pass.

    `headroom_db` keeps the master below the profile ceiling so lossy encoding (which adds
    inter-sample overshoot) still lands under it. The limiter runs at 4x the output rate so it
    catches inter-sample peaks, with `latency` compensation so audio does not shift in time
    (which would break A/V sync), and its auto-level is off so it never changes loudness.
    `peak_margin_db` adds the limiter already when the peak comes that close to the ceiling
    (for a peak that was predicted rather than measured).
    """
    require_audible(measured)
    gain = profile.integrated - measured.integrated + extra_gain_db
    ceiling = profile.true_peak - headroom_db
    resample = f"aresample={rate}:resampler=soxr:precision=28"
    if measured.true_peak + gain <= ceiling - peak_margin_db:
        return GainPlan(gain, False, ceiling, f"volume={gain:.3f}dB:precision=double,{resample}")
    limit = max(10 ** (ceiling / 20), 0.0625)
    chain = (f"volume={gain:.3f}dB:precision=double,"
             f"aresample={rate * 4}:resampler=soxr,"
             f"alimiter=limit={limit:.6f}:attack=1:release=80:level=false:latency=true,"
             f"{resample}")
    return GainPlan(gain, True, ceiling, chain)
