"""Test recordings for the sound suite, built from the shared speech clips with ffmpeg.

Every input is one ffmpeg filter graph over real speech from `../shared/audio` (never copied
into the repository) plus generated noise, written as 44.1 kHz mono 24-bit FLAC:

- each speech clip is decoded, mixed to mono, resampled to 44.1 kHz (`-ac 1 -ar 44100`) and
  brought to a stated loudness: measured with `ebur128`, then `volume=<difference>dB`;
- clips are joined with `concat` and `anullsrc` gaps, so the section boundaries are known;
- the noise bed runs under everything (`amix=normalize=0`), scaled to a stated RMS level:
  room tone and fan noise are `anoisesrc` (pink or brown), hum is `aevalsrc` with a 50 Hz
  fundamental and decaying harmonics up to 550 Hz (mains hum through a cheap power supply
  is rich in harmonics). Noise levels are measured with `astats` and corrected, so
  "-35 dBFS" is the RMS of the noise bed itself.

`Built.sections` says where each clip sits (seconds), `Built.noise_only` where only the
noise bed plays: the bench and the tests measure what processing did there.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

RATE = 44100
GAP_S = 0.8


@dataclass(frozen=True)
class Built:
    """A generated recording and where its parts are (seconds)."""

    path: Path
    sections: list[tuple[float, float, str]]  # (start, end, label)
    noise_only: list[tuple[float, float]]
    duration_s: float
    reference: str = ""  # what is said, for WER
    facts: dict[str, float] = field(default_factory=dict)


def _run(ffmpeg: str, *args: str) -> str:
    proc = subprocess.run([ffmpeg, "-hide_banner", "-nostdin", "-nostats", *args],
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"ffmpeg failed building a sound bench input: {proc.stderr[-800:]}")
    return proc.stderr


def _mono(ffmpeg: str, src: Path, dest: Path) -> Path:
    _run(ffmpeg, "-y", "-v", "error", "-i", str(src), "-map", "0:a:0", "-ac", "1", "-ar",
         str(RATE), "-c:a", "flac", "-sample_fmt", "s32", str(dest))
    return dest


def _integrated(ffmpeg: str, path: Path) -> float:
    err = _run(ffmpeg, "-i", str(path), "-af", "ebur128=framelog=verbose", "-f", "null", "-")
    return float(re.findall(r"I:\s+(-?[\d.]+) LUFS", err.rsplit("Summary:", 1)[1])[0])


def _rms_dbfs(ffmpeg: str, path: Path) -> float:
    err = _run(ffmpeg, "-i", str(path), "-af", "astats=measure_perchannel=none", "-f",
               "null", "-")
    return float(re.findall(r"RMS level dB:\s*(-?[\d.]+)", err)[-1])


def _duration(path: Path) -> float:
    import av

    with av.open(str(path)) as c:
        s = c.streams.audio[0]
        return float(s.duration * s.time_base) if s.duration else c.duration / 1e6


def noise_source(kind: str, seconds: float) -> str:
    """An lavfi source for the noise bed: pink/brown/white noise, 50/60 Hz hum, or two of
    them mixed (`hum50+pink`)."""
    if kind in ("pink", "brown", "white"):
        return (f"anoisesrc=color={kind}:sample_rate={RATE}:amplitude=0.5:seed=7:"
                f"duration={seconds:.3f}")
    if kind in ("hum50", "hum60"):
        f0 = 50 if kind == "hum50" else 60
        terms = "+".join(f"{0.6 / k:.3f}*sin(2*PI*{f0 * k}*t+{k})" for k in range(1, 12))
        return f"aevalsrc='{terms}':s={RATE}:d={seconds:.3f}"
    if "+" in kind:  # e.g. hum50+pink: both sources mixed, then the bed's level is set
        a, b = kind.split("+")
        return (f"{noise_source(a, seconds)}[a];{noise_source(b, seconds)}[b];"
                "[a][b]amix=inputs=2:normalize=0[out0]")
    raise ValueError(f"unknown noise kind {kind!r}")


def _noise_bed(ffmpeg: str, kind: str, dbfs: float, seconds: float, dest: Path) -> Path:
    raw = dest.with_name(dest.stem + ".raw.flac")
    _run(ffmpeg, "-y", "-v", "error", "-f", "lavfi", "-i", noise_source(kind, seconds),
         "-ac", "1", "-c:a", "flac", "-sample_fmt", "s32", str(raw))
    gain = dbfs - _rms_dbfs(ffmpeg, raw)
    _run(ffmpeg, "-y", "-v", "error", "-i", str(raw), "-af", f"volume={gain:.3f}dB",
         "-c:a", "flac", "-sample_fmt", "s32", str(dest))
    raw.unlink()
    return dest


def assemble(ffmpeg: str, workdir: Path, name: str, parts: list[tuple[Path, float, str]],
             *, noise: str, noise_dbfs: float, lead_s: float = 2.0, gap_s: float = GAP_S,
             gaps: list[float] | None = None, reference: str = "") -> Built:
    """Clips (path, LUFS, label) one after another with gaps, over a noise bed.

    `gaps[i]` is the silence after part i (default `gap_s`); `lead_s` of noise alone starts
    and ends the recording, so a noise-only stretch always exists.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    dest = workdir / f"{name}.flac"
    inputs: list[str] = []
    chain: list[str] = []
    labels: list[str] = []
    sections: list[tuple[float, float, str]] = []
    noise_only: list[tuple[float, float]] = [(0.0, lead_s)]
    t = lead_s
    chain.append(f"anullsrc=r={RATE}:cl=mono,atrim=duration={lead_s}[lead]")
    labels.append("[lead]")
    for i, (src, lufs, label) in enumerate(parts):
        mono = _mono(ffmpeg, src, workdir / f"{name}.part{i}.flac")
        gain = lufs - _integrated(ffmpeg, mono)
        inputs += ["-i", str(mono)]
        chain.append(f"[{len(inputs) // 2 - 1}:a]volume={gain:.3f}dB[c{i}]")
        labels.append(f"[c{i}]")
        length = _duration(mono)
        sections.append((round(t, 3), round(t + length, 3), label))
        t += length
        gap = (gaps[i] if gaps and i < len(gaps) else gap_s) if i < len(parts) - 1 else lead_s
        chain.append(f"anullsrc=r={RATE}:cl=mono,atrim=duration={gap}[g{i}]")
        labels.append(f"[g{i}]")
        noise_only.append((round(t, 3), round(t + gap, 3)))
        t += gap
    bed = _noise_bed(ffmpeg, noise, noise_dbfs, t + 1.0, workdir / f"{name}.bed.flac")
    inputs += ["-i", str(bed)]
    chain.append("".join(labels) + f"concat=n={len(labels)}:v=0:a=1[speech]")
    chain.append(f"[speech][{len(inputs) // 2 - 1}:a]amix=inputs=2:duration=first:"
                 "normalize=0[out]")
    _run(ffmpeg, "-y", "-v", "error", *inputs, "-filter_complex", ";".join(chain),
         "-map", "[out]", "-ac", "1", "-ar", str(RATE), "-c:a", "flac", "-sample_fmt", "s32",
         str(dest))
    for leftover in workdir.glob(f"{name}.part*.flac"):
        leftover.unlink()
    bed.unlink()
    return Built(dest, sections, noise_only, round(t, 3), reference,
                 {"noise_dbfs": noise_dbfs})


def alternating_voices(ffmpeg: str, audio: Path, workdir: Path, *, rounds: int = 2,
                       loud_lufs: float = -20.0, drop_db: float = 10.0) -> Built:
    """Two speakers taking turns, the second `drop_db` quieter (a far-away guest):
    JFK (male, 11 s) at `loud_lufs`, then LJSpeech LJ050-0131 (female, 7.7 s) `drop_db`
    lower, `rounds` times, 0.8 s apart, over -60 dBFS pink room tone."""
    parts = []
    for _ in range(rounds):
        parts += [(audio / "jfk.flac", loud_lufs, "near"),
                  (audio / "speechbrain" / "LJ050-0131.wav", loud_lufs - drop_db, "far")]
    return assemble(ffmpeg, workdir, "alternating", parts, noise="pink", noise_dbfs=-60.0)


def long_pauses(ffmpeg: str, audio: Path, workdir: Path, *, pause_s: float = 25.0) -> Built:
    """JFK, `pause_s` of room tone only, JFK again: speech at -20 LUFS over -60 dBFS pink."""
    clip = audio / "jfk.flac"
    return assemble(ffmpeg, workdir, "pauses", [(clip, -20.0, "speech"), (clip, -20.0, "speech")],
                    noise="pink", noise_dbfs=-60.0, gaps=[pause_s])


def noisy_speech(ffmpeg: str, audio: Path, workdir: Path, noise: str, *,
                 noise_dbfs: float = -35.0, long: bool = True) -> Built:
    """Speech at -20 LUFS over a noise bed: the 104 s `longform_concat_16k.flac` (every part
    has a reference transcript) when `long`, else JFK alone (11 s)."""
    import json

    if long:
        src = audio / "longform_concat_16k.flac"
        reference = json.loads((audio / "longform_concat_16k.json").read_text())["reference"]
    else:
        src = audio / "jfk.flac"
        reference = json.loads((audio / "references.json").read_text())["jfk.flac"]["reference"]
    return assemble(ffmpeg, workdir, f"noisy-{noise}", [(src, -20.0, "speech")], noise=noise,
                    noise_dbfs=noise_dbfs, lead_s=3.0, reference=reference)
