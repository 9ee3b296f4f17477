"""openai-whisper's log-Mel spectrogram, computed in blocks of frames.

`whisper.log_mel_spectrogram` runs one STFT over the whole recording: for an hour that is a
580 MB complex spectrogram plus a 290 MB power copy, on top of the 230 MB of samples — the
largest allocation of the whole pipeline. The same frames computed a few thousand at a time
need only the finished 80 x frames Mel array (115 MB for an hour). The result is the same
computation frame by frame (same window, hop, padding, filters, clamp and scaling), so the
transcript does not change. `install()` puts it in place of the function
`whisper.transcribe` calls; it accepts everything the original does.
"""

from __future__ import annotations

from typing import Any

import numpy as np

#: Frames per block: 30 s of audio (the decoder's window), ~2.4 MB of complex STFT.
BLOCK_FRAMES = 3000


def log_mel_spectrogram(audio: Any, n_mels: int = 80, padding: int = 0,
                        device: Any = None) -> Any:
    import torch
    from whisper.audio import HOP_LENGTH, N_FFT, load_audio, mel_filters

    if not torch.is_tensor(audio):
        if isinstance(audio, str):
            audio = load_audio(audio)
        audio = torch.from_numpy(np.asarray(audio, dtype=np.float32))
    if device is not None:
        audio = audio.to(device)
    half = N_FFT // 2
    length = audio.shape[-1] + padding
    # torch.stft(center=True) reflect-pads the (zero-padded) signal by N_FFT/2 on each side;
    # build exactly that padded signal once, then cut frames from it block by block.
    head = audio[1:half + 1]
    if head.shape[-1] < half:
        head = torch.nn.functional.pad(head, (0, half - head.shape[-1]))
    if length - audio.shape[-1] < half + 1:  # right reflection reaches into the audio
        tail_src = torch.nn.functional.pad(audio, (0, padding))
        tail = tail_src[-half - 1:-1].flip(-1)
    else:
        tail = torch.zeros(half, dtype=audio.dtype, device=audio.device)
    padded = torch.cat([head.flip(-1), audio,
                        torch.zeros(padding, dtype=audio.dtype, device=audio.device), tail])
    frames = length // HOP_LENGTH  # whisper drops the STFT's last frame
    window = torch.hann_window(N_FFT).to(audio.device)
    filters = mel_filters(audio.device, n_mels)
    out = torch.empty((n_mels, frames), dtype=torch.float32, device=audio.device)
    for f0 in range(0, frames, BLOCK_FRAMES):
        f1 = min(f0 + BLOCK_FRAMES, frames)
        piece = padded[f0 * HOP_LENGTH:(f1 - 1) * HOP_LENGTH + N_FFT]
        stft = torch.stft(piece, N_FFT, HOP_LENGTH, window=window, center=False,
                          return_complex=True)
        out[:, f0:f1] = torch.clamp(filters @ (stft.abs() ** 2), min=1e-10).log10()
    del padded
    torch.maximum(out, out.max() - 8.0, out=out)
    out.add_(4.0).div_(4.0)
    return out


def install() -> None:
    """Make `whisper.transcribe` use the blockwise spectrogram (idempotent, thread-safe:
    the replacement gives the same result for any input, so the swap order is irrelevant)."""
    import whisper.transcribe as wt

    wt.log_mel_spectrogram = log_mel_spectrogram


class BlockwiseFeatures:
    """faster-whisper's feature extractor, run on blocks of the recording.

    Its numpy STFT frames the whole waveform at once (for an hour: a 576 MB frame matrix, a
    complex spectrogram and its power copy — about 3.4 GB at the peak). Each block here is
    computed by the original extractor with two hops of real audio on each side (so no frame
    sees the block's edge), and its frames are copied into the result. The per-block log
    floor (block max - 8) is then raised to the global one, which gives exactly the
    whole-recording result: max(max(L, b - 8), g - 8) = max(L, g - 8) for b <= g.
    """

    def __init__(self, original: Any, block_frames: int = BLOCK_FRAMES) -> None:
        self._original = original
        self._block = block_frames

    def __getattr__(self, name: str) -> Any:
        return getattr(self._original, name)

    def __call__(self, waveform: np.ndarray, padding: int = 160,
                 chunk_length: int | None = None) -> np.ndarray:
        hop = int(self._original.hop_length)
        total = waveform.shape[-1] + padding
        frames = total // hop
        if frames <= 2 * self._block:
            return self._original(waveform, padding=padding, chunk_length=chunk_length)
        if padding:
            waveform = np.pad(waveform, (0, padding))
        context = 2 * hop  # > n_fft / 2 and a whole number of hops
        out: np.ndarray | None = None
        for f0 in range(0, frames, self._block):
            f1 = min(f0 + self._block, frames)
            lead = context if f0 else 0
            start = f0 * hop - lead
            stop = total if f1 == frames else f1 * hop + context
            part = self._original(waveform[start:stop], padding=0, chunk_length=chunk_length)
            skip = lead // hop
            piece = part[..., skip:skip + (f1 - f0)]
            if out is None:
                out = np.empty((piece.shape[0], frames), dtype=piece.dtype)
            out[:, f0:f1] = piece
        assert out is not None
        floor = out.max() - 2.0  # the global floor g - 8, in output units (x + 4) / 4
        np.maximum(out, floor, out=out)
        return out
