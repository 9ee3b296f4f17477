"""Who spoke when: offline speaker diarization, so captions can name the speaker.

Nothing is downloaded. The voice encoder is Resemblyzer's (GE2E, a 3-layer LSTM trained on
LibriSpeech, VoxCeleb 1 and 2; Apache-2.0), whose 17 MB of weights ship inside the
`resemblyzer` wheel; speech is found with the Silero VAD model that ships inside
`faster-whisper`. We run the encoder's network ourselves (torch) from the weights file, with
our own mel filterbank, so that neither librosa nor webrtcvad (a C build) is needed.

How it works, and why:

1. Speech frames (10 ms) from the VAD, so pauses, room tone and music are never embedded.
2. Speech is cut into *segments* at pauses (speakers usually change at a pause, so a turn
   boundary lands on one), and long segments into chunks of about `CHUNK_S`: a chunk is long
   enough for a stable voice embedding, short enough that a change without a pause is found
   within about half a chunk.
3. One embedding per chunk; agglomerative clustering (average linkage, cosine), merging while
   the two most alike groups pass `threshold` or `ratio` (see `cluster`; both tuned on the
   bench's built conversations, bench/diarize.py), or until the number of speakers the
   producer gave is reached. Speakers with less than `min_speaker_s` of speech are folded into
   the nearest one.
4. Where two neighbouring chunks of one segment differ, the boundary is moved to the 200 ms
   step that best separates the two voices (sliding 1 s windows scored against both).

The audio is read as a stream; what is kept is the mel spectrogram (58 MB per hour) and the
VAD's decisions, never the samples.
"""

from __future__ import annotations

import importlib.util
import itertools
import logging
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.asr.types import Word
from pipeline.errors import PipelineError

log = logging.getLogger(__name__)

SAMPLE_RATE = 16_000
HOP = 160  # 10 ms frames, the encoder's
N_FFT = 400  # 25 ms window
N_MELS = 40
FRAME_S = HOP / SAMPLE_RATE
#: Silero's window (32 ms at 16 kHz) and its speech probability thresholds (with hysteresis).
VAD_WINDOW = 512
VAD_ON, VAD_OFF = 0.5, 0.35
#: Pauses at least this long split speech into segments; shorter speech runs are dropped.
MIN_PAUSE_S = 0.2
MIN_SPEECH_S = 0.25
#: Segments longer than MAX_CHUNK_S are cut into chunks of about CHUNK_S.
CHUNK_S = 1.5
MAX_CHUNK_S = 2.0
#: Defaults of `[speakers]` (see pipeline/config.py), tuned by bench/diarize.py.
THRESHOLD = 0.65
RATIO = 0.80
MIN_SPEAKER_S = 2.0
MAX_SPEAKERS = 6
#: Window and step of the boundary refinement.
REFINE_WINDOW_S = 1.0
REFINE_STEP_S = 0.2
#: Resemblyzer normalises quieter speech up to this level before embedding.
TARGET_DBFS = -30.0


@dataclass(frozen=True)
class Turn:
    """A stretch of speech by one speaker (0 = the first to speak), in seconds."""

    start: float
    end: float
    speaker: int

    def to_dict(self) -> dict[str, Any]:
        return {"start": round(self.start, 3), "end": round(self.end, 3),
                "speaker": self.speaker}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Turn:
        return cls(float(data["start"]), float(data["end"]), int(data["speaker"]))


@dataclass(frozen=True)
class Diarization:
    """The speakers heard and their turns; speakers are numbered by first appearance."""

    speakers: int
    turns: tuple[Turn, ...]
    duration_s: float
    speech_s: float
    chunks: int = 0
    #: How the number of speakers was decided: "estimated", "given", "no speech".
    count_source: str = "estimated"
    #: Cosine similarity of the last merge refused (or made, when the count was given).
    figures: dict[str, float] = field(default_factory=dict)

    def speaker_at(self, start: float, end: float) -> int:
        """The speaker who talks most within [start, end]; the nearest turn when none does."""
        if not self.turns:
            return 0
        overlap: dict[int, float] = {}
        for turn in self.turns:
            shared = min(end, turn.end) - max(start, turn.start)
            if shared > 0:
                overlap[turn.speaker] = overlap.get(turn.speaker, 0.0) + shared
        if overlap:
            return max(overlap, key=lambda s: (overlap[s], -s))
        middle = (start + end) / 2
        nearest = min(self.turns, key=lambda t: max(t.start - middle, middle - t.end, 0.0))
        return nearest.speaker


# --- the voice encoder ----------------------------------------------------------------


def weights_path() -> Path:
    """The pretrained voice encoder inside the installed `resemblyzer` package (not imported:
    its own module pulls librosa and webrtcvad, which we do not need)."""
    spec = importlib.util.find_spec("resemblyzer")
    locations = list(spec.submodule_search_locations or []) if spec else []
    for folder in locations:
        path = Path(folder) / "pretrained.pt"
        if path.is_file():
            return path
    raise PipelineError("speaker detection needs the voice encoder of the `resemblyzer` "
                        "package, which is not installed; run `make setup` (or pip install "
                        "--no-deps resemblyzer==0.1.4), or set [speakers] enabled = false")


class VoiceEncoder:
    """Resemblyzer's GE2E voice encoder: 40 mel bands at 10 ms → a 256-d unit vector."""

    def __init__(self, path: Path | None = None) -> None:
        import torch

        self.torch = torch
        self.lstm = torch.nn.LSTM(N_MELS, 256, 3, batch_first=True)
        self.linear = torch.nn.Linear(256, 256)
        path = path or weights_path()
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)["model_state"]
            self.lstm.load_state_dict({k[5:]: v for k, v in state.items()
                                       if k.startswith("lstm.")})
            self.linear.load_state_dict({k[7:]: v for k, v in state.items()
                                         if k.startswith("linear.")})
        except (OSError, RuntimeError, KeyError) as exc:
            raise PipelineError(f"the voice encoder weights {path} could not be loaded ({exc}); "
                                "reinstall resemblyzer with `make setup`") from exc
        self.lstm.eval()
        self.linear.eval()

    def embed(self, mels: Sequence[np.ndarray], batch: int = 64) -> np.ndarray:
        """One unit-length embedding per mel array (frames × 40), any lengths.

        Runs on one thread: this small LSTM does not gain from more, and on two busy cores
        two threads spent 12× the CPU time (2.2 s instead of 0.19 s for 72 s of speech,
        bench/diarize.py) spinning while they waited for each other. The caller's thread
        count is restored afterwards.
        """
        torch = self.torch
        out = np.zeros((len(mels), 256), np.float32)
        order = sorted(range(len(mels)), key=lambda k: len(mels[k]))
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            self._embed(mels, order, batch, out)
        finally:
            torch.set_num_threads(threads)
        return out

    def _embed(self, mels: Sequence[np.ndarray], order: list[int], batch: int,
               out: np.ndarray) -> None:
        torch = self.torch
        with torch.inference_mode():
            for lo in range(0, len(order), batch):
                ids = order[lo:lo + batch]
                lengths = [len(mels[k]) for k in ids]
                padded = np.zeros((len(ids), max(lengths), N_MELS), np.float32)
                for row, k in enumerate(ids):
                    padded[row, :lengths[row]] = mels[k]
                packed = torch.nn.utils.rnn.pack_padded_sequence(
                    torch.from_numpy(padded), torch.tensor(lengths), batch_first=True,
                    enforce_sorted=False)
                _, (hidden, _) = self.lstm(packed)
                raw = torch.relu(self.linear(hidden[-1])).numpy()
                norms = np.linalg.norm(raw, axis=1, keepdims=True)
                out[ids] = raw / np.maximum(norms, 1e-9)


def get_encoder(resources: dict[str, Any]) -> VoiceEncoder:
    """The encoder, loaded once per process (kept with the other models in `resources`)."""
    if "voice_encoder" not in resources:
        resources["voice_encoder"] = VoiceEncoder()
    encoder: VoiceEncoder = resources["voice_encoder"]
    return encoder


# --- features: mel frames and speech frames, from a stream --------------------------------


def _hz_to_mel(f: np.ndarray) -> np.ndarray:
    """Slaney's mel scale (librosa's default): linear below 1 kHz, logarithmic above."""
    f = np.asarray(f, np.float64)
    mel = f / (200.0 / 3)
    log_part = f >= 1000.0
    mel[log_part] = 15.0 + np.log(f[log_part] / 1000.0) / (np.log(6.4) / 27.0)
    return mel


def _mel_to_hz(m: np.ndarray) -> np.ndarray:
    m = np.asarray(m, np.float64)
    f = m * (200.0 / 3)
    log_part = m >= 15.0
    f[log_part] = 1000.0 * np.exp((np.log(6.4) / 27.0) * (m[log_part] - 15.0))
    return f


def mel_filterbank() -> np.ndarray:
    """(40, 201) Slaney-normalised triangles, as librosa.filters.mel(sr=16000, n_fft=400,
    n_mels=40) computes them: the encoder was trained on exactly these."""
    fft_freqs = np.linspace(0, SAMPLE_RATE / 2, N_FFT // 2 + 1)
    edges = _mel_to_hz(np.linspace(_hz_to_mel(np.array([0.0]))[0],
                                   _hz_to_mel(np.array([SAMPLE_RATE / 2]))[0], N_MELS + 2))
    widths = np.diff(edges)
    ramps = edges[:, None] - fft_freqs[None, :]
    lower = -ramps[:-2] / widths[:-1, None]
    upper = ramps[2:] / widths[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper))
    weights *= (2.0 / (edges[2:] - edges[:-2]))[:, None]
    return weights.astype(np.float32)


class Features:
    """Mel power frames and VAD speech probabilities, computed block by block."""

    def __init__(self) -> None:
        from faster_whisper.vad import get_vad_model

        self.vad = get_vad_model()
        self.filters = mel_filterbank()
        self.window = np.hanning(N_FFT + 1)[:-1].astype(np.float32)  # periodic Hann
        self.mels: list[np.ndarray] = []
        self.probs: list[np.ndarray] = []
        self.samples = 0
        self.energy = 0.0
        # Samples not yet framed: the mel tail starts N_FFT/2 before the next frame centre.
        self._mel_tail = np.zeros(N_FFT // 2, np.float32)  # librosa's centre padding (zeros)
        self._vad_tail = np.zeros(0, np.float32)

    def add(self, block: np.ndarray) -> None:
        block = np.asarray(block, np.float32)
        self.samples += len(block)
        self.energy += float(np.dot(block.astype(np.float64), block.astype(np.float64)))
        self._mel(np.concatenate([self._mel_tail, block]))
        vad = np.concatenate([self._vad_tail, block])
        usable = len(vad) - len(vad) % VAD_WINDOW
        if usable:
            self.probs.append(np.asarray(self.vad(vad[:usable]), np.float32).reshape(-1))
        self._vad_tail = vad[usable:]

    def _mel(self, buffer: np.ndarray) -> None:
        count = (len(buffer) - N_FFT) // HOP + 1 if len(buffer) >= N_FFT else 0
        if count > 0:
            idx = np.arange(N_FFT)[None, :] + HOP * np.arange(count)[:, None]
            spectrum = np.abs(np.fft.rfft(buffer[idx] * self.window, axis=1)) ** 2
            self.mels.append(spectrum.astype(np.float32) @ self.filters.T)
        self._mel_tail = buffer[count * HOP:]

    def finish(self) -> tuple[np.ndarray, np.ndarray]:
        """(mel frames × 40, speech probability per 10 ms frame)."""
        self._mel(np.concatenate([self._mel_tail, np.zeros(N_FFT // 2, np.float32)]))
        if len(self._vad_tail):
            last = np.zeros(VAD_WINDOW, np.float32)
            last[:len(self._vad_tail)] = self._vad_tail
            self.probs.append(np.asarray(self.vad(last), np.float32).reshape(-1))
        mels = np.concatenate([np.zeros((0, N_MELS), np.float32), *self.mels])
        n = self.samples // HOP
        mels = mels[:n]
        probs = np.concatenate([np.zeros(0, np.float32), *self.probs])
        frame_window = (np.arange(n) * HOP + HOP // 2) // VAD_WINDOW
        frame_probs = probs[np.minimum(frame_window, len(probs) - 1)] if len(probs) else \
            np.zeros(n, np.float32)
        return mels, frame_probs


def speech_mask(probs: np.ndarray) -> np.ndarray:
    """Speech frames from VAD probabilities: on above VAD_ON, off below VAD_OFF."""
    mask = np.zeros(len(probs), bool)
    on = False
    for k, p in enumerate(probs):
        on = p >= VAD_ON or (on and p >= VAD_OFF)
        mask[k] = on
    return mask


def runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """[start, end) frame runs where `mask` is true."""
    padded = np.concatenate([[False], mask, [False]])
    edges = np.flatnonzero(padded[1:] != padded[:-1])
    return [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2], strict=True)]


def segments(mask: np.ndarray) -> list[tuple[int, int]]:
    """Speech runs joined across pauses shorter than MIN_PAUSE_S, very short runs dropped."""
    gap = round(MIN_PAUSE_S / FRAME_S)
    out: list[tuple[int, int]] = []
    for a, b in runs(mask):
        if out and a - out[-1][1] < gap:
            out[-1] = (out[-1][0], b)
        else:
            out.append((a, b))
    return [(a, b) for a, b in out if (b - a) * FRAME_S >= MIN_SPEECH_S]


def chunks(segs: Iterable[tuple[int, int]]) -> list[tuple[int, int, int]]:
    """(start, end, segment index) chunks: segments cut into equal parts of about CHUNK_S."""
    out = []
    for k, (a, b) in enumerate(segs):
        length = (b - a) * FRAME_S
        parts = 1 if length <= MAX_CHUNK_S else max(1, round(length / CHUNK_S))
        cuts = np.linspace(a, b, parts + 1).round().astype(int)
        out += [(int(x), int(y), k) for x, y in itertools.pairwise(cuts)]
    return out


# --- clustering -------------------------------------------------------------------------


def cluster(embeddings: np.ndarray, weights: np.ndarray, *, threshold: float,
            ratio: float = RATIO, speakers: int | None = None,
            max_speakers: int = MAX_SPEAKERS) -> tuple[np.ndarray, dict[str, float]]:
    """Agglomerative clustering, average linkage on cosine similarity.

    Merges the two clusters whose chunks are, on average (weighted by duration), the most
    alike. Without a given count it stops when the best pair is neither alike in absolute
    terms (`threshold`) nor as alike as each cluster is within itself (`ratio` of the mean of
    their own average similarities): a noisy single voice (a speech before a crowd) is less
    alike within itself than two clean voices, so a fixed threshold alone splits the one or
    merges the other. With `speakers` given it merges down to that count; it never leaves
    more than `max_speakers`.

    With S the weighted sum of a cluster's unit embeddings, W its weight and Q the sum of its
    squared weights, the average similarity of A and B is S_A·S_B / (W_A W_B) and within A
    (|S_A|² - Q_A) / (W_A² - Q_A), so a merge costs O(n·d). Each row's best partner is cached;
    rows that pointed at the merged pair are rescanned. Returns the label per row and figures
    of the best pair left unmerged (between, within, relative).
    """
    n = len(embeddings)
    if n == 0:
        return np.zeros(0, int), {}
    weights = np.asarray(weights, np.float64)
    sums = embeddings.astype(np.float64) * weights[:, None]
    total = weights.copy()
    squares = weights ** 2
    sim = (sums @ sums.T) / np.outer(total, total)
    np.fill_diagonal(sim, -np.inf)
    alive = np.ones(n, bool)
    best = sim.argmax(axis=1) if n > 1 else np.zeros(1, int)
    best_sim = sim[np.arange(n), best]
    labels = np.arange(n)
    count = n
    want = speakers or 1
    figures: dict[str, float] = {}

    def within(k: int) -> float | None:
        spread = total[k] ** 2 - squares[k]
        return float((sums[k] @ sums[k] - squares[k]) / spread) if spread > 1e-9 else None

    while count > want:
        i = int(np.argmax(np.where(alive, best_sim, -np.inf)))
        j = int(best[i])
        between = float(best_sim[i])
        own = [w for w in (within(i), within(j)) if w is not None]
        relative = between / float(np.mean(own)) if own else 0.0
        if speakers is None and count <= max_speakers and between < threshold \
                and relative < ratio:
            figures = {"between": round(between, 4), "relative": round(relative, 4),
                       "within": round(float(np.mean(own)), 4) if own else 1.0}
            break
        sums[i] += sums[j]
        total[i] += total[j]
        squares[i] += squares[j]
        alive[j] = False
        labels[labels == j] = i
        count -= 1
        sim[j, :] = -np.inf
        sim[:, j] = -np.inf
        live = np.flatnonzero(alive)
        row = (sums[live] @ sums[i]) / (total[live] * total[i])
        sim[i, live] = row
        sim[live, i] = row
        sim[i, i] = -np.inf
        best_sim[j] = -np.inf
        for r in live:
            if r == i or best[r] in (i, j):
                best[r] = int(np.argmax(sim[r]))
                best_sim[r] = sim[r, best[r]]
            elif sim[r, i] > best_sim[r]:
                best[r], best_sim[r] = i, sim[r, i]
    _, dense = np.unique(labels, return_inverse=True)
    return dense, figures


def fold_small(labels: np.ndarray, embeddings: np.ndarray, weights: np.ndarray,
               min_s: float) -> np.ndarray:
    """Fold speakers with less than `min_s` seconds of speech into the most similar other.

    A handful of chunks that sound different (a laugh, a cough, a word shouted) is rarely a
    speaker of its own; a speaker the producer wants counted is given in the sidecar.
    """
    labels = labels.copy()
    while True:
        ids, inverse = np.unique(labels, return_inverse=True)
        if len(ids) <= 1:
            return np.unique(labels, return_inverse=True)[1]
        totals = np.bincount(inverse, weights=weights)
        small = int(np.argmin(totals))
        if totals[small] >= min_s:
            return inverse
        centroids = np.stack([(embeddings[inverse == k] * weights[inverse == k, None]).sum(0)
                              for k in range(len(ids))])
        centroids /= np.maximum(np.linalg.norm(centroids, axis=1, keepdims=True), 1e-9)
        scores = centroids @ centroids[small]
        scores[small] = -np.inf
        labels = np.where(inverse == small, int(np.argmax(scores)), inverse)


# --- the whole thing --------------------------------------------------------------------


@dataclass(frozen=True)
class Settings:
    threshold: float = THRESHOLD
    ratio: float = RATIO
    min_speaker_s: float = MIN_SPEAKER_S
    max_speakers: int = MAX_SPEAKERS
    speakers: int | None = None  # the producer's count, when given


def diarize(blocks: Iterable[np.ndarray], encoder: VoiceEncoder | None = None,
            settings: Settings | None = None, *,
            resources: dict[str, Any] | None = None) -> Diarization:
    """Diarize 16 kHz mono float32 blocks. The encoder is loaded (once, into `resources`)
    only when there is speech: a silent recording costs the VAD alone."""
    settings = settings or Settings()
    features = Features()
    for block in blocks:
        features.add(block)
    mels, probs = features.finish()
    duration = features.samples / SAMPLE_RATE
    segs = segments(speech_mask(probs))
    speech = sum(b - a for a, b in segs) * FRAME_S
    if not segs:
        return Diarization(0, (), duration, 0.0, count_source="no speech")
    encoder = encoder or get_encoder(resources if resources is not None else {})
    mels *= _gain(features.energy, features.samples)  # in place: 58 MB an hour
    parts = chunks(segs)
    embeddings = encoder.embed([mels[a:b] for a, b, _ in parts])
    weights = np.array([(b - a) * FRAME_S for a, b, _ in parts])
    given = settings.speakers
    labels, figures = cluster(embeddings, weights, threshold=settings.threshold,
                              ratio=settings.ratio,
                              speakers=min(given, len(parts)) if given else None,
                              max_speakers=settings.max_speakers)
    if not given:
        labels = fold_small(labels, embeddings, weights, settings.min_speaker_s)
    turns = _turns(parts, labels, mels, encoder, embeddings, weights)
    turns = _by_first_appearance(turns)
    count = len({t.speaker for t in turns})
    return Diarization(count, tuple(turns), duration, round(speech, 3), len(parts),
                       "given" if given else "estimated", figures)


def _gain(energy: float, samples: int) -> float:
    """Power gain that brings quiet speech up to TARGET_DBFS, as Resemblyzer's preprocessing
    does (never down: louder speech is what it was trained on). The mel is power, so the
    amplitude gain is squared."""
    if samples == 0 or energy <= 0:
        return 1.0
    rms_db = 10 * math.log10(energy / samples)
    change = TARGET_DBFS - rms_db
    return 10 ** (change / 10) if change > 0 else 1.0


def _turns(parts: list[tuple[int, int, int]], labels: np.ndarray, mels: np.ndarray,
           encoder: VoiceEncoder, embeddings: np.ndarray, weights: np.ndarray) -> list[Turn]:
    """Chunks → turns; a change between two chunks of one segment is refined. Turns stop at
    pauses, so the pauses count as nobody's speech."""
    ids = np.unique(labels)
    centroids = np.stack([(embeddings[labels == k] * weights[labels == k, None]).sum(0)
                          for k in ids])
    centroids /= np.maximum(np.linalg.norm(centroids, axis=1, keepdims=True), 1e-9)
    bounds = [[a, b, int(labels[k])] for k, (a, b, _) in enumerate(parts)]
    for k in range(1, len(parts)):
        if parts[k][2] == parts[k - 1][2] and labels[k] != labels[k - 1]:
            lo, hi = parts[k - 1][0], parts[k][1]
            cut = _refine(mels, lo, hi, parts[k][0], centroids[labels[k - 1]],
                          centroids[labels[k]], encoder)
            bounds[k - 1][1] = bounds[k][0] = cut
    turns: list[Turn] = []
    for a, b, speaker in bounds:
        if b <= a:
            continue
        start, end = a * FRAME_S, b * FRAME_S
        if turns and turns[-1].speaker == speaker and start - turns[-1].end < FRAME_S / 2:
            turns[-1] = replace(turns[-1], end=end)
        else:
            turns.append(Turn(start, end, speaker))
    return turns


def _refine(mels: np.ndarray, lo: int, hi: int, guess: int, first: np.ndarray,
            second: np.ndarray, encoder: VoiceEncoder) -> int:
    """The frame in [lo, hi) where the voice changes from `first` to `second`: windows before
    each candidate should sound like `first`, windows after like `second`."""
    width = round(REFINE_WINDOW_S / FRAME_S)
    step = round(REFINE_STEP_S / FRAME_S)
    starts = list(range(lo, max(lo + 1, hi - width + 1), step))
    if len(starts) < 3:
        return guess
    vectors = encoder.embed([mels[s:s + width] for s in starts])
    lean = vectors @ second - vectors @ first  # > 0: sounds like the second speaker
    centres = np.array(starts) + width // 2
    best, best_score = guess, -np.inf
    for cut in range(lo + step, hi, step):
        before, after = lean[centres < cut], lean[centres >= cut]
        if not len(before) or not len(after):
            continue
        score = float(after.sum() - before.sum())
        if score > best_score:
            best, best_score = cut, score
    return best


def _by_first_appearance(turns: list[Turn]) -> list[Turn]:
    order: dict[int, int] = {}
    for turn in turns:
        order.setdefault(turn.speaker, len(order))
    return [replace(t, speaker=order[t.speaker]) for t in turns]


# --- naming and labelling ---------------------------------------------------------------


def speaker_names(count: int, given: Sequence[str] = ()) -> list[str]:
    """Names in order of first appearance: the given ones, then `Speaker N`."""
    return [given[k] if k < len(given) else f"Speaker {k + 1}" for k in range(count)]


def label_words(words: Sequence[Word], diarization: Diarization,
                names: Sequence[str]) -> list[Word]:
    """Each word with the name of its speaker (the turn it overlaps most). With fewer than
    two speakers the words stay unlabelled: a single voice needs no name in captions."""
    if diarization.speakers < 2:
        return list(words)
    return [replace(w, speaker=names[diarization.speaker_at(w.start, w.end)]) for w in words]


def speaker_changes(words: Sequence[Word]) -> list[float]:
    """Start times of the first word of each new speaker's turn (caption break points)."""
    return [b.start for a, b in itertools.pairwise(words)
            if a.speaker and b.speaker and a.speaker != b.speaker]
