"""Word times that sit on the speech: whisper's word alignment checked against the audio.

Whisper's word timestamps come from cross-attention, about ±0.2–0.5 s, and the first word after
a pause usually starts where the previous word ended: it swallows the silence. A caption cut
from such words appears while nobody speaks, and a pause between two sentences is invisible to
the segmenter. The audio says where the pauses really are:

1. `levels`: the speech-band (100–4000 Hz) level of every 10 ms frame, streamed from ffmpeg
   (an hour is 360 000 numbers, never the decoded recording);
2. `find_pauses`: stretches of at least `MIN_PAUSE_S` whose level stays near the local noise
   floor. Floor and speech level are percentiles over ±8 s around each moment, and the floor
   may rise to what the quietest moments within ±1.5 s show, so a recording whose background
   changes (a quiet studio, then a noisy hall) is judged locally. A frame is sound when it is
   `SPEECH_ABOVE_FLOOR_DB` over the floor and within `SPEECH_BELOW_LOUD_DB` of the loud
   speech; a pause's edges then give way to sound just above the floor (hysteresis), so a
   quiet consonant at a word's edge stays with the word;
3. `refine`: no word straddles a pause. A word that does keeps the side holding most of its
   speech (the swallowed silence is cut off), the last word before a pause ends where the
   sound ends and the first word after it starts where the sound starts (moved by at most
   `MAX_SHIFT_S`, so a cough is never mistaken for the next sentence).

Words inside continuous speech keep whisper's times: energy cannot tell where one word ends
and the next begins, and the caption needs only the edges of cues, which fall at pauses.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.asr.types import Word
from pipeline.audio.pcm import stream_mono

log = logging.getLogger(__name__)

RATE = 16_000
HOP = RATE // 100  # 10 ms frames
WINDOW = 2 * HOP  # each frame's level over 20 ms
FRAME_S = HOP / RATE
BAND_HZ = (100.0, 4000.0)
#: Silence this long is a pause (shorter gaps are stop consonants and word joins).
MIN_PAUSE_S = 0.25
#: A frame is sound when above both the local floor + a margin and the local loud level −
#: SPEECH_BELOW_LOUD_DB. The margin is SNR_SHARE of the distance from floor to loud speech,
#: between MIN_MARGIN_DB and SPEECH_ABOVE_FLOOR_DB (a noisy recording has less room).
SPEECH_ABOVE_FLOOR_DB = 10.0
SPEECH_BELOW_LOUD_DB = 30.0
SNR_SHARE = 0.3
MIN_MARGIN_DB = 3.0
#: A pause ends (hysteresis) where sound rises above this share of that margin.
EDGE_SHARE = 0.5
#: How far the edges of a pause may extend past the strict threshold (a fading consonant).
EDGE_REACH_S = 0.15
#: Floor and loud level are percentiles over this many seconds either side of each moment.
CONTEXT_S = 8.0
#: The floor may rise locally to what the quietest moments within ±NEAR_S show, by at most
#: NEAR_RISE_DB (a noisier stretch of the recording).
NEAR_S = 1.5
NEAR_RISE_DB = 30.0
#: A word's start or end moves at most this far to meet the speech's edge.
MAX_SHIFT_S = 0.5


@dataclass(frozen=True)
class Pause:
    """A stretch without speech, in seconds of the audio analysed."""

    start: float
    end: float

    @property
    def length(self) -> float:
        return self.end - self.start


def levels(blocks: Iterable[np.ndarray]) -> np.ndarray:
    """Speech-band level (dB) of each 10 ms frame of 16 kHz samples given in any blocks."""
    window = np.hanning(WINDOW).astype(np.float32)
    freqs = np.fft.rfftfreq(WINDOW, 1 / RATE)
    band = (freqs >= BAND_HZ[0]) & (freqs <= BAND_HZ[1])
    scale = 2.0 / float(np.sum(window ** 2)) / WINDOW  # mean-square of the band, as RMS²
    out: list[np.ndarray] = []
    carry = np.zeros(HOP, np.float32)  # the first frame starts half a window before 0
    for block in blocks:
        buffer = np.concatenate([carry, block.astype(np.float32, copy=False)])
        count = (len(buffer) - WINDOW) // HOP + 1
        if count <= 0:
            carry = buffer
            continue
        frames = np.lib.stride_tricks.sliding_window_view(buffer, WINDOW)[::HOP][:count]
        spectrum = np.fft.rfft(frames * window, axis=1)[:, band]
        power = np.einsum("ij,ij->i", spectrum.real, spectrum.real) + np.einsum(
            "ij,ij->i", spectrum.imag, spectrum.imag)
        out.append(10 * np.log10(power * scale + 1e-10).astype(np.float32))
        carry = buffer[count * HOP:]
    return np.concatenate(out) if out else np.zeros(0, np.float32)


def audio_levels(ffmpeg: str, path: Path) -> np.ndarray:
    """`levels` of a media file's first audio stream, decoded to 16 kHz mono in blocks."""
    return levels(stream_mono(ffmpeg, path, RATE, block_samples=30 * RATE,
                              purpose="caption timing"))


def _local(db: np.ndarray, q: float, context_s: float = CONTEXT_S) -> np.ndarray:
    """The `q`th percentile of `db` within ±`context_s` of each frame (on a 0.1 s grid)."""
    step = 10
    half = round(context_s / FRAME_S)
    grid = np.arange(0, len(db), step)
    values = np.array([np.percentile(db[max(0, g - half):g + half + 1], q) for g in grid])
    return np.interp(np.arange(len(db)), grid, values).astype(np.float32)


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    edges = np.flatnonzero(np.diff(np.concatenate([[0], mask.astype(np.int8), [0]])))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist(), strict=True))


def find_pauses(db: np.ndarray, min_pause_s: float | None = None) -> list[Pause]:
    """Stretches of at least `min_pause_s` without speech, judged against the local floor."""
    if len(db) == 0:
        return []
    min_pause_s = MIN_PAUSE_S if min_pause_s is None else min_pause_s
    db = np.maximum(db, -100.0)
    floor, loud = _local(db, 10), _local(db, 95)
    # A noisier stretch (a crowd, another room) raises the floor where it is, to what the
    # quietest moments within ±NEAR_S show (at most NEAR_RISE_DB: a stretch without any pause
    # has only quiet syllables as its quietest moments).
    floor = np.maximum(floor, np.minimum(_local(db, 10, NEAR_S), floor + NEAR_RISE_DB))
    # In a noisy recording (speech little above the floor) the margins shrink with the range.
    margin = np.clip(SNR_SHARE * (loud - floor), MIN_MARGIN_DB, SPEECH_ABOVE_FLOOR_DB)
    strict = np.maximum(floor + margin, loud - SPEECH_BELOW_LOUD_DB)
    edge = floor + margin * EDGE_SHARE
    reach = round(EDGE_REACH_S / FRAME_S)
    pauses: list[Pause] = []
    for a, b in _runs(db <= strict):
        # Hysteresis: sound just above the floor at either edge (a consonant fading out or
        # rising) belongs to the speech beside it, up to EDGE_REACH_S.
        lo, hi = a, b
        if a > 0:
            while lo < min(a + reach, b) and db[lo] > edge[lo]:
                lo += 1
        if b < len(db):
            while hi > max(b - reach, lo) and db[hi - 1] > edge[hi - 1]:
                hi -= 1
        if (hi - lo) * FRAME_S >= min_pause_s:
            pauses.append(Pause(lo * FRAME_S, hi * FRAME_S))
    return pauses


def _speech_in(start: float, end: float, pauses: Sequence[Pause], first: int) -> float:
    """Seconds of [start, end) outside `pauses` (searched from index `first`)."""
    total = max(0.0, end - start)
    for p in pauses[first:]:
        if p.start >= end:
            break
        total -= max(0.0, min(end, p.end) - max(start, p.start))
    return max(0.0, total)


def _closer_to_previous(words: Sequence[Word], j: int, pause: Pause) -> bool:
    """Does words[j] (timed inside `pause`) belong with the word before it? Whisper squeezes a
    phrase's last word against the one before it ("the middle." with "middle." lasting 0 s,
    a second after "the"), so whisper's own gaps to its neighbours decide; without
    neighbours, the nearer edge of the pause."""
    w = words[j]
    before = w.start - words[j - 1].end if j > 0 else w.start - pause.start
    after = words[j + 1].start - w.end if j + 1 < len(words) else pause.end - w.end
    return before <= after


def refine(words: Sequence[Word], pauses: Sequence[Pause], max_shift_s: float = MAX_SHIFT_S
           ) -> list[Word]:
    """`words` with no word straddling a pause, and the words at a pause on its edges."""
    spans = [[w.start, w.end] for w in words]
    k = 0
    for i, p in enumerate(pauses):
        while k < len(spans) and spans[k][1] <= p.start:
            k += 1
        j = k
        while j < len(spans) and spans[j][0] < p.end:
            s, e = spans[j]
            if e > p.start:  # overlaps the pause: keep the side with more of its speech
                before = _speech_in(s, p.start, pauses, max(0, i - 1)) if s < p.start else 0.0
                after = _speech_in(p.end, e, pauses, i + 1) if e > p.end else 0.0
                if before == after == 0.0:  # wholly inside: with the nearer neighbour
                    if _closer_to_previous(words, j, p):
                        spans[j] = [min(s, p.start), p.start]
                    else:
                        spans[j] = [p.end, max(e, p.end)]
                elif before > after:
                    spans[j][1] = p.start
                else:  # a tie goes after: whisper's words start early far more than late
                    spans[j][0] = p.end
            j += 1
        # The words either side meet the pause's edges (whisper starts late, ends early).
        last = next((n for n in range(j - 1, -1, -1) if spans[n][1] <= p.start + 1e-9), None)
        if last is not None and p.start - spans[last][1] <= max_shift_s and (
                last + 1 >= len(spans) or spans[last + 1][0] >= p.start - 1e-9):
            spans[last][1] = p.start
        nxt = next((n for n in range(k, len(spans)) if spans[n][0] >= p.end - 1e-9), None)
        if nxt is not None and spans[nxt][0] - p.end <= max_shift_s and (
                nxt == 0 or spans[nxt - 1][1] <= p.end + 1e-9):
            spans[nxt][0] = p.end
    out: list[Word] = []
    previous_end = 0.0
    for w, (s, e) in zip(words, spans, strict=True):
        s = max(s, previous_end)
        e = max(e, s + 0.01)
        out.append(dataclasses.replace(w, start=round(s, 3), end=round(e, 3)))
        previous_end = e
    return out


def align_to_audio(words: Sequence[Word], ffmpeg: str, audio: Path) -> list[Word]:
    """`refine` `words` against the pauses of `audio` (whose time is the words' time)."""
    if not words:
        return list(words)
    pauses = find_pauses(audio_levels(ffmpeg, audio))
    refined = refine(words, pauses)
    moved = sum(abs(a.start - b.start) > 0.05 or abs(a.end - b.end) > 0.05
                for a, b in zip(words, refined, strict=True))
    log.info("[caption] %d pauses in %s; %d of %d words retimed to the speech", len(pauses),
             audio.name, moved, len(words))
    return refined
