"""Batched Kaldi log-mel filter banks in pure PyTorch, as the original AST pipeline computes them (no torchaudio).

`kaldi_fbank` equals `torchaudio.compliance.kaldi.fbank(w, htk_compat=True, sample_frequency=16000, use_energy=False,
window_type="hanning", num_mel_bins=128, dither=0.0, frame_shift=10)` for each clip of a batch: 25 ms frames every
10 ms (`FrameSpec`, `num_frames`), Kaldi's triangular mel filters (`kaldi_mel_banks`) and a float32-epsilon log floor.
`log_mel_into` is the batched engine behind it and behind `ASTFeatureExtractor`: clips go through in cache-sized groups
and reuse one set of scratch buffers.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

__all__ = ["FRAME_LENGTH_MS", "FrameSpec", "kaldi_fbank", "kaldi_mel_banks", "log_mel_into", "num_frames",
           "num_samples_for_frames"]  # fmt: skip

# Kaldi fbank options used by AST (the Kaldi/torchaudio defaults except for the window type).
FRAME_LENGTH_MS = 25
_FRAME_SHIFT_MS = 10
_PREEMPHASIS = 0.97
_LOW_FREQ_HZ = 20.0
_LOG_FLOOR = torch.finfo(torch.float32).eps
# Frames per group of clips: on CPU small enough for the intermediates to stay in cache, elsewhere large (the
# scratch buffers take about 8 kB per frame at 16 kHz, so 65536 frames is about 0.5 GB).
_CPU_CHUNK_FRAMES = 1024
_DEVICE_CHUNK_FRAMES = 65536


@dataclass(frozen=True)
class FrameSpec:
    """Kaldi framing at one sampling rate: 25 ms frames every 10 ms, FFT size the next power of two."""

    size: int
    shift: int
    n_fft: int

    @classmethod
    def for_rate(cls, sampling_rate: int) -> FrameSpec:
        size = sampling_rate * FRAME_LENGTH_MS // 1000
        shift = sampling_rate * _FRAME_SHIFT_MS // 1000
        if size < 2 or shift < 1:
            raise ValueError(f"sampling_rate {sampling_rate} Hz is too low for 25 ms / 10 ms Kaldi frames")
        return cls(size=size, shift=shift, n_fft=1 << (size - 1).bit_length())

    def centre_x2(self, first_frame: int, frames: int) -> int:
        """Twice the centre, in samples, of the span of `frames` frames from frame `first_frame` (an integer, so
        that centres computed from an index do not drift): frame i covers samples [i * shift, i * shift + size).
        The one formula for where a patch column sits in time (frame-level outputs, HEAR timestamps)."""
        return (2 * first_frame + frames - 1) * self.shift + self.size

    def samples_for(self, frames: int) -> int:
        """Samples that give exactly `frames` frames (frames >= 1): (frames - 1) * 160 + 400 at 16 kHz."""
        if frames < 1:
            raise ValueError(f"frames must be positive, got {frames}")
        return (frames - 1) * self.shift + self.size


def num_samples_for_frames(frames: int, sampling_rate: int = 16000) -> int:
    """Samples that give exactly `frames` Kaldi frames at `sampling_rate` (the inverse of `num_frames`)."""
    return FrameSpec.for_rate(sampling_rate).samples_for(frames)


def num_frames(num_samples: int, sampling_rate: int = 16000) -> int:
    """Number of Kaldi frames (snip_edges) in `num_samples` samples: 1 + (N - 400) // 160 at 16 kHz, 0 if N < 400."""
    spec = FrameSpec.for_rate(sampling_rate)
    return 0 if num_samples < spec.size else 1 + (num_samples - spec.size) // spec.shift


def kaldi_mel_banks(num_mel_bins: int, n_fft: int, sampling_rate: int) -> torch.Tensor:
    """Kaldi triangular mel filters from 20 Hz to Nyquist as a (n_fft // 2 + 1, num_mel_bins) float32 matrix.

    Mel scale 1127 ln(1 + f / 700); triangles equally spaced in mel, evaluated at the FFT bin centres. The Nyquist
    bin gets weight zero, as in Kaldi. The arithmetic is float32 in Kaldi's order on purpose: the narrowest low
    filters catch a single FFT bin near their edge, and a float64 design moves such a weight (hence a log-mel value)
    by up to ~1e-4 after normalisation relative to Kaldi/torchaudio. Filters that cover no FFT bin are all zero.
    """
    if num_mel_bins < 1:
        raise ValueError(f"num_mel_bins must be positive, got {num_mel_bins}")
    nyquist = sampling_rate / 2
    mel_low, mel_high = _hz_to_mel(_LOW_FREQ_HZ), _hz_to_mel(nyquist)
    delta = (mel_high - mel_low) / (num_mel_bins + 1)
    index = torch.arange(num_mel_bins, dtype=torch.float32)
    left = mel_low + index * delta
    centre = mel_low + (index + 1.0) * delta
    right = mel_low + (index + 2.0) * delta
    bin_hz = (sampling_rate / n_fft) * torch.arange(n_fft // 2, dtype=torch.float32)
    bin_mel = (1127.0 * torch.log(1.0 + bin_hz / 700.0))[:, None]
    rising = (bin_mel - left) / (centre - left)
    falling = (right - bin_mel) / (right - centre)
    weights = torch.minimum(rising, falling).clamp_min(0.0)
    return torch.cat([weights, weights.new_zeros(1, num_mel_bins)])


def _hz_to_mel(hz: float) -> float:
    return 1127.0 * math.log(1.0 + hz / 700.0)


@dataclass(frozen=True)
class _MelBand:
    """Consecutive mel filters `[first, last)` and the FFT bins `[low, high)` they cover, with their weights."""

    first: int
    last: int
    low: int
    high: int
    weights: torch.Tensor  # (high - low, last - first)


# The mel projection is done in this many bands of filters: the weight matrix is banded (each FFT bin feeds at most
# two filters), so four block products do a quarter of the dense product's work.
_MEL_BANDS = 4


@functools.lru_cache(maxsize=16)
def _fbank_constants(
    sampling_rate: int, num_mel_bins: int, device: torch.device, dtype: torch.dtype
) -> tuple[torch.Tensor, tuple[_MelBand, ...]]:
    """Symmetric Hann window (frame size,) and the mel filters split into bands, designed in float32 (Kaldi's
    roundings), returned in `dtype` on `device`."""
    spec = FrameSpec.for_rate(sampling_rate)
    window = torch.hann_window(spec.size, periodic=False, dtype=torch.float32)
    mel = kaldi_mel_banks(num_mel_bins, spec.n_fft, sampling_rate)
    bands = []
    for filters in torch.arange(num_mel_bins).tensor_split(min(_MEL_BANDS, num_mel_bins)):
        first, last = int(filters[0]), int(filters[-1]) + 1
        used = mel[:, first:last].sum(dim=1).nonzero()
        low, high = (int(used.min()), int(used.max()) + 1) if len(used) else (0, 1)
        bands.append(_MelBand(first, last, low, high, mel[low:high, first:last].to(device, dtype)))
    return window.to(device, dtype), tuple(bands)


def kaldi_fbank(waveforms: torch.Tensor, sampling_rate: int = 16000, num_mel_bins: int = 128) -> torch.Tensor:
    """Kaldi log-mel filter banks of a batch of waveforms, as AST computes them, on the input's device.

    `waveforms`: (batch, samples) floating point, at least one frame long. Returns (batch, frames, num_mel_bins)
    float32 with frames = num_frames(samples). Per frame (25 ms, hop 10 ms, edges snipped): remove the frame's mean,
    pre-emphasise with 0.97 (first sample replicated), apply a symmetric Hann window, zero-pad to the FFT size, take
    the power spectrum, project on the Kaldi mel filters and take the log with a float32-epsilon floor. No dithering,
    no energy column. The batch is computed in groups of clips (cache-sized on CPU); not differentiable.
    """
    if waveforms.dim() != 2 or not waveforms.is_floating_point():
        raise ValueError(f"expected a float (batch, samples) tensor, got {waveforms.dtype} {tuple(waveforms.shape)}")
    frames = num_frames(waveforms.shape[-1], sampling_rate)
    if frames == 0:
        raise ValueError(f"{waveforms.shape[-1]} samples are fewer than one frame at {sampling_rate} Hz")
    out = torch.empty(waveforms.shape[0], frames, num_mel_bins, device=waveforms.device)
    log_mel_into(out, waveforms.unbind(0), sampling_rate)
    return out


def log_mel_into(out: torch.Tensor, clips: Sequence[torch.Tensor], sampling_rate: int) -> None:
    """Write the Kaldi log-mel features of the first `out.shape[1]` frames of each clip into `out`.

    `out`: (len(clips), frames, mel bins) float32 (or float64, which the feature extractor uses for clips whose
    power spectrum would overflow float32), on the device the work runs on; the work runs in `out`'s dtype. `clips`:
    1-D float tensors, each at least one frame long; clips shorter than `frames` leave garbage rows for the caller to
    overwrite.

    Clips go through in groups, all through one set of scratch buffers: on CPU a group holds about
    `_CPU_CHUNK_FRAMES` frames, which keeps the intermediates in cache (about twice as fast as one pass over a large
    batch), and reusing the buffers avoids fresh, page-faulting allocations for every group. On other devices groups
    are large (`_DEVICE_CHUNK_FRAMES`), so a typical batch is a single group. A clip longer than a group goes through
    alone, in blocks of that many frames (frames are independent), so the scratch memory is bounded whatever the
    length: about 8 kB per frame of a group at 16 kHz (8 MB on CPU, 0.5 GB elsewhere) besides `out` and the input.
    """
    spec = FrameSpec.for_rate(sampling_rate)
    frames = out.shape[1]
    window, bands = _fbank_constants(sampling_rate, out.shape[-1], out.device, out.dtype)
    chunk_frames = _CPU_CHUNK_FRAMES if out.device.type == "cpu" else _DEVICE_CHUNK_FRAMES
    step = max(1, chunk_frames // frames)
    block = min(frames, chunk_frames)
    scratch = {block: _Scratch.allocate(min(step, len(clips)), block, spec, out.shape[-1], out)}
    for start in range(0, len(clips), step):
        group = clips[start : start + step]
        for first in range(0, frames, block):  # one pass unless a single clip is longer than `block` frames
            count = min(block, frames - first)
            if count not in scratch:  # the shorter last block of a long clip
                scratch[count] = _Scratch.allocate(1, count, spec, out.shape[-1], out)
            pieces = [clip[first * spec.shift :] for clip in group]
            log_mel = _log_mel(_group_waveforms(pieces, scratch[count].waveforms), spec, window, bands, scratch[count])
            out[start : start + len(group), first : first + count].copy_(log_mel)


def _group_waveforms(group: Sequence[torch.Tensor], buffer: torch.Tensor) -> torch.Tensor:
    """The first `buffer.shape[1]` samples of each clip of `group` as a (len(group), samples) float32 tensor.

    A single clip that is long enough and already of the buffer's dtype and device is used in place; otherwise the
    clips are copied into `buffer`, zero-padded at the end.
    """
    needed = buffer.shape[1]
    first = group[0]
    if len(group) == 1 and first.shape[0] >= needed and first.dtype == buffer.dtype and first.device == buffer.device:
        return first[None, :needed]
    waveforms = buffer[: len(group)]
    for row, clip in zip(waveforms, group):
        head = clip[:needed]
        row[: head.shape[0]] = head
        row[head.shape[0] :] = 0.0
    return waveforms


@dataclass(frozen=True)
class _Scratch:
    """Buffers for one group of up to `clips` clips of `frames` frames; `_log_mel` uses their leading rows."""

    waveforms: torch.Tensor  # (clips, samples of `frames` frames)
    padded: torch.Tensor  # (clips, frames, n_fft): windowed frames; the zero tail is written once
    emphasis: torch.Tensor  # (clips, frames, size - 1): 0.97 x[n - 1]
    spectrum: torch.Tensor  # (clips, frames, n_fft // 2 + 1) complex, of the buffers' precision
    power: torch.Tensor  # (clips, frames, n_fft // 2 + 1)
    energies: torch.Tensor  # (clips, frames, num_mel_bins)

    @classmethod
    def allocate(
        cls, clips: int, frames: int, spec: FrameSpec, num_mel_bins: int, like: torch.Tensor
    ) -> _Scratch:
        bins = spec.n_fft // 2 + 1
        padded = like.new_empty(clips, frames, spec.n_fft)
        padded[..., spec.size :] = 0.0
        return cls(
            waveforms=like.new_empty(clips, spec.samples_for(frames)),
            padded=padded,
            emphasis=like.new_empty(clips, frames, spec.size - 1),
            spectrum=like.new_empty(clips, frames, bins, dtype=like.dtype.to_complex()),
            power=like.new_empty(clips, frames, bins),
            energies=like.new_empty(clips, frames, num_mel_bins),
        )


def _log_mel(
    waveforms: torch.Tensor, spec: FrameSpec, window: torch.Tensor, bands: tuple[_MelBand, ...], scratch: _Scratch
) -> torch.Tensor:
    """`kaldi_fbank` for one group of clips: (clips, samples) -> (clips, frames, mel bins), a view into `scratch`.

    The steps before the FFT run in Kaldi's order with Kaldi's float32 roundings (centre, then pre-emphasise, then
    window) because the lowest FFT bins come out of a cancellation and would otherwise drift by more than 1e-4 in
    log-mel.
    """
    clips = waveforms.shape[0]
    framed = waveforms.unfold(-1, spec.size, spec.shift)  # (clips, frames, size), a view
    padded = scratch.padded[:clips]
    body = padded[..., : spec.size]
    torch.sub(framed, framed.mean(dim=-1, keepdim=True), out=body)
    # Pre-emphasis x[n] - 0.97 x[n - 1]; sample 0 keeps its centred value, which only meets the window's exact 0.
    emphasis = torch.mul(body[..., :-1], _PREEMPHASIS, out=scratch.emphasis[:clips])
    body[..., 1:] -= emphasis
    body *= window
    spectrum = torch.fft.rfft(padded, out=scratch.spectrum[:clips])
    parts = torch.view_as_real(spectrum).square_()  # (clips, frames, bins, 2): squared real and imaginary parts
    power = torch.add(parts[..., 0], parts[..., 1], out=scratch.power[:clips])
    energies = scratch.energies[:clips]
    power_rows, energy_rows = power.view(-1, power.shape[-1]), energies.view(-1, energies.shape[-1])
    for band in bands:  # each block product writes straight into its columns (BLAS leading dimension)
        torch.mm(power_rows[:, band.low : band.high], band.weights, out=energy_rows[:, band.first : band.last])
    return energies.clamp_min_(_LOG_FLOOR).log_()
