"""AST feature extractor: batched pure-PyTorch Kaldi log-mel filter banks (no torchaudio needed).

The features are those of the original AST pipeline,
`torchaudio.compliance.kaldi.fbank(w, htk_compat=True, sample_frequency=16000, use_energy=False,
window_type="hanning", num_mel_bins=128, dither=0.0, frame_shift=10)`, padded with zeros in log-mel space (or
truncated) to a fixed number of frames and normalised as `(fbank - mean) / (2 * std)`. (The original data loader also
subtracts each clip's mean first; Kaldi's per-frame DC removal cancels that up to float rounding, so, like
transformers' built-in extractor, this one does not.)
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from transformers import BatchFeature, SequenceFeatureExtractor
from transformers.utils import TensorType, logging

from .audio_utils import check_sampling_rate, resample, to_float_waveform

logger = logging.get_logger(__name__)

__all__ = ["ASTFeatureExtractor", "kaldi_fbank", "kaldi_mel_banks", "num_frames"]

# Kaldi fbank options used by AST (the Kaldi/torchaudio defaults except for the window type).
_FRAME_LENGTH_MS = 25
_FRAME_SHIFT_MS = 10
_PREEMPHASIS = 0.97
_LOW_FREQ_HZ = 20.0
_LOG_FLOOR = torch.finfo(torch.float32).eps
# Frames per group of clips: on CPU small enough for the intermediates to stay in cache, elsewhere large (the
# scratch buffers take about 8 kB per frame at 16 kHz, so 65536 frames is about 0.5 GB).
_CPU_CHUNK_FRAMES = 1024
_DEVICE_CHUNK_FRAMES = 65536

_PADDING_STRATEGIES = ("max_length", "longest", "do_not_pad")

RawSpeech = np.ndarray | torch.Tensor | Sequence[float] | Sequence[np.ndarray | torch.Tensor | Sequence[float]]


@dataclass(frozen=True)
class FrameSpec:
    """Kaldi framing at one sampling rate: 25 ms frames every 10 ms, FFT size the next power of two."""

    size: int
    shift: int
    n_fft: int

    @classmethod
    def for_rate(cls, sampling_rate: int) -> FrameSpec:
        size = sampling_rate * _FRAME_LENGTH_MS // 1000
        shift = sampling_rate * _FRAME_SHIFT_MS // 1000
        if size < 2 or shift < 1:
            raise ValueError(f"sampling_rate {sampling_rate} Hz is too low for 25 ms / 10 ms Kaldi frames")
        return cls(size=size, shift=shift, n_fft=1 << (size - 1).bit_length())


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
    sampling_rate: int, num_mel_bins: int, device: torch.device
) -> tuple[torch.Tensor, tuple[_MelBand, ...]]:
    """Symmetric Hann window (frame size,) and the mel filters split into bands, float32 on `device`."""
    spec = FrameSpec.for_rate(sampling_rate)
    window = torch.hann_window(spec.size, periodic=False, dtype=torch.float32)
    mel = kaldi_mel_banks(num_mel_bins, spec.n_fft, sampling_rate)
    bands = []
    for filters in torch.arange(num_mel_bins).tensor_split(min(_MEL_BANDS, num_mel_bins)):
        first, last = int(filters[0]), int(filters[-1]) + 1
        used = mel[:, first:last].sum(dim=1).nonzero()
        low, high = (int(used.min()), int(used.max()) + 1) if len(used) else (0, 1)
        bands.append(_MelBand(first, last, low, high, mel[low:high, first:last].to(device)))
    return window.to(device), tuple(bands)


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
    _log_mel_into(out, waveforms.unbind(0), sampling_rate)
    return out


def _log_mel_into(out: torch.Tensor, clips: Sequence[torch.Tensor], sampling_rate: int) -> None:
    """Write the Kaldi log-mel features of the first `out.shape[1]` frames of each clip into `out`.

    `out`: (len(clips), frames, mel bins) float32, on the device the work runs on. `clips`: 1-D float tensors, each at
    least one frame long; clips shorter than `frames` leave garbage rows for the caller to overwrite.

    Clips go through in groups, all through one set of scratch buffers: on CPU a group holds about
    `_CPU_CHUNK_FRAMES` frames, which keeps the intermediates in cache (about twice as fast as one pass over a large
    batch), and reusing the buffers avoids fresh, page-faulting allocations for every group. On other devices groups
    are large (`_DEVICE_CHUNK_FRAMES`), so a typical batch is a single group.
    """
    spec = FrameSpec.for_rate(sampling_rate)
    frames = out.shape[1]
    window, bands = _fbank_constants(sampling_rate, out.shape[-1], out.device)
    chunk_frames = _CPU_CHUNK_FRAMES if out.device.type == "cpu" else _DEVICE_CHUNK_FRAMES
    step = max(1, chunk_frames // frames)
    scratch = _Scratch.allocate(min(step, len(clips)), frames, spec, out.shape[-1], out)
    for start in range(0, len(clips), step):
        group = clips[start : start + step]
        log_mel = _log_mel(_group_waveforms(group, scratch.waveforms), spec, window, bands, scratch)
        out[start : start + len(group)].copy_(log_mel)


def _group_waveforms(group: Sequence[torch.Tensor], buffer: torch.Tensor) -> torch.Tensor:
    """The first `buffer.shape[1]` samples of each clip of `group` as a (len(group), samples) float32 tensor.

    A single clip that is long enough and already float32 on the buffer's device is used in place; otherwise the
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
    spectrum: torch.Tensor  # (clips, frames, n_fft // 2 + 1) complex64
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
            waveforms=like.new_empty(clips, (frames - 1) * spec.shift + spec.size),
            padded=padded,
            emphasis=like.new_empty(clips, frames, spec.size - 1),
            spectrum=like.new_empty(clips, frames, bins, dtype=torch.complex64),
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


class ASTFeatureExtractor(SequenceFeatureExtractor):
    r"""Audio Spectrogram Transformer feature extractor: Kaldi log-mel filter banks, padded and normalised.

    A drop-in, configuration-compatible replacement for `transformers.ASTFeatureExtractor` (existing
    `preprocessor_config.json` files load into it) that computes the batch at once in PyTorch on the input's device,
    resamples other sampling rates instead of rejecting them, supports `padding="longest"` and returns an
    `attention_mask` on request. torchaudio is not needed.

    Args:
        feature_size: Kept for compatibility with `SequenceFeatureExtractor` (mono audio: 1).
        sampling_rate: Sampling rate the model expects, in Hz; other input rates are resampled to it.
        num_mel_bins: Number of mel filters (feature dimension F).
        max_length: Number of frames to pad or truncate to (1024 for AudioSet models, 128 for Speech Commands).
        padding_value: Log-mel value of padded frames, before normalisation (0.0 as in the original AST code).
        do_normalize: Whether to apply `(fbank - mean) / (2 * std)`.
        mean: Dataset mean of the log-mel features (AudioSet by default).
        std: Dataset standard deviation of the log-mel features (AudioSet by default).
        return_attention_mask: Whether `__call__` returns `attention_mask` by default.
    """

    model_input_names = ["input_values", "attention_mask"]

    def __init__(
        self,
        feature_size: int = 1,
        sampling_rate: int = 16000,
        num_mel_bins: int = 128,
        max_length: int = 1024,
        padding_value: float = 0.0,
        do_normalize: bool = True,
        mean: float = -4.2677393,
        std: float = 4.5689974,
        return_attention_mask: bool = False,
        **kwargs: Any,
    ) -> None:
        # Saved configs of the built-in class name it here; the type is not an attribute of ours (see `to_dict`).
        kwargs.pop("feature_extractor_type", None)
        super().__init__(
            feature_size=feature_size,
            sampling_rate=sampling_rate,
            padding_value=padding_value,
            return_attention_mask=return_attention_mask,
            **kwargs,
        )
        self.num_mel_bins = num_mel_bins
        self.max_length = max_length
        self.do_normalize = do_normalize
        self.mean = mean
        self.std = std

    def to_dict(self) -> dict[str, Any]:
        """Serialisable configuration, without `feature_extractor_type`.

        `AutoFeatureExtractor` resolves a saved `feature_extractor_type` by class name with transformers' own classes
        first, so writing "ASTFeatureExtractor" would load the built-in extractor instead of this one. Without the key
        the class is found through config.json's model_type ("ast"), for which this class is registered.
        """
        output = super().to_dict()
        output.pop("feature_extractor_type", None)
        return output

    def __call__(
        self,
        raw_speech: RawSpeech,
        sampling_rate: int | None = None,
        padding: bool | str = "max_length",
        max_length: int | None = None,
        truncation: bool = True,
        return_attention_mask: bool | None = None,
        return_tensors: str | TensorType | None = None,
        do_normalize: bool | None = None,
        **kwargs: Any,
    ) -> BatchFeature:
        """Compute normalised log-mel features for one clip or a batch of clips.

        Args:
            raw_speech: One mono clip (1-D numpy array, torch tensor or list of floats), a list of such clips (lengths
                may differ), or a 2-D (batch, samples) numpy array or torch tensor. Integer PCM is scaled to [-1, 1).
                Torch inputs are processed on their device.
            sampling_rate: Rate of `raw_speech` in Hz; if it differs from `self.sampling_rate` the audio is resampled.
                `None` assumes `self.sampling_rate` (with a warning).
            padding: "max_length" (default: every clip padded to `max_length` frames, like the original AST),
                "longest"/`True` (to the longest clip of the batch) or "do_not_pad"/`False` (all clips must then
                give the same number of frames). Padding is `padding_value` in log-mel space, before normalisation.
            max_length: Overrides `self.max_length` for this call.
            truncation: Cut features to `max_length` frames. Without it "max_length" pads to at least `max_length`.
            return_attention_mask: Return `attention_mask` (1 = real frame); defaults to `self.return_attention_mask`.
            return_tensors: None (lists of numpy arrays), "np" or "pt" (torch tensors on the input's device).
            do_normalize: Overrides `self.do_normalize` for this call; `False` returns the raw log-mel filter banks
                (padding frames hold `padding_value`), which `normalize` turns into what `True` returns, bit for bit.

        Returns:
            `BatchFeature` with `input_values` (batch, frames, num_mel_bins) float32 and, if asked for,
            `attention_mask` (batch, frames) int64.
        """
        if kwargs:
            logger.warning(f"{type(self).__name__}.__call__ ignores the arguments {sorted(kwargs)}")
        strategy = _padding_strategy(padding)
        limit = _positive_int(self.max_length if max_length is None else max_length, "max_length")
        rate = self._input_rate(sampling_rate)
        tensor_type = _tensor_type(return_tensors)

        clips = _as_clips(raw_speech)
        if rate != self.sampling_rate:
            clips = [resample(clip, rate, self.sampling_rate) for clip in clips]
        lengths = [clip.shape[0] for clip in clips]
        spec = FrameSpec.for_rate(self.sampling_rate)
        _check_lengths(lengths, spec.size, resampled_from=None if rate == self.sampling_rate else rate)

        frames = [num_frames(n, self.sampling_rate) for n in lengths]
        target = _target_frames(strategy, frames, limit, truncation)
        features, mask = self._padded_features(clips, frames, target)
        if self.do_normalize if do_normalize is None else do_normalize:
            self.normalize(features, inplace=True)

        data: dict[str, Any] = {"input_values": features}
        if self.return_attention_mask if return_attention_mask is None else return_attention_mask:
            data["attention_mask"] = mask.to(torch.int64)
        return BatchFeature(_convert(data, tensor_type))

    def _input_rate(self, sampling_rate: int | None) -> int:
        """Validated rate of the input, defaulting (with a warning) to the model's rate."""
        if sampling_rate is None:
            logger.warning(
                f"It is strongly recommended to pass the `sampling_rate` argument to `{type(self).__name__}()`; "
                f"assuming {self.sampling_rate} Hz. Failing to do so can result in silent errors."
            )
            return check_sampling_rate(self.sampling_rate)
        return check_sampling_rate(sampling_rate)

    def _padded_features(
        self, clips: list[torch.Tensor], frames: list[int], target: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Raw log-mel features (batch, target, F) and the boolean real-frame mask (batch, target), on the first
        clip's device.

        Only the frames that survive truncation are computed; frames past each clip's end (including those computed
        from the zeros that pad shorter clips of a group) are set to `padding_value`.
        """
        device = clips[0].device
        computed = min(max(frames), target)
        features = torch.empty(len(clips), target, self.num_mel_bins, device=device)
        _log_mel_into(features[:, :computed], clips, self.sampling_rate)
        for row, count in zip(features, frames):
            row[count:] = self.padding_value
        mask = torch.arange(target, device=device) < torch.tensor(frames, device=device)[:, None]
        return features, mask

    def normalize(self, features: torch.Tensor, inplace: bool = False) -> torch.Tensor:
        """`(features - mean) / (2 * std)`: the dataset normalisation, for raw filter banks of any shape (..., F).

        The one place the formula lives: `__call__` applies it, and callers that modify raw filter banks first (the
        training collator's augmentation and padding) apply it after. The result has std 0.5 on the dataset.
        """
        if not inplace:
            features = features.clone()
        return features.sub_(self.mean).div_(self.std * 2)


def _padding_strategy(padding: bool | str) -> str:
    """Map `padding` (bool, str or transformers' PaddingStrategy) to one of `_PADDING_STRATEGIES`."""
    if isinstance(padding, bool):
        return "longest" if padding else "do_not_pad"
    value = getattr(padding, "value", padding)
    if value not in _PADDING_STRATEGIES:
        raise ValueError(f"unknown padding strategy {padding!r}; use one of {_PADDING_STRATEGIES}, True or False")
    return value


def _tensor_type(return_tensors: str | TensorType | None) -> str | None:
    """Validate `return_tensors`: None, "np" or "pt"."""
    if return_tensors is None:
        return None
    value = getattr(return_tensors, "value", return_tensors)
    if value not in ("np", "pt"):
        raise ValueError(f"return_tensors must be None, 'np' or 'pt', got {return_tensors!r}")
    return value


def _as_clips(raw_speech: RawSpeech) -> list[torch.Tensor]:
    """Validate any accepted input and split it into 1-D float32 clips (rows of a 2-D input are views).

    Errors name the offending clip. Torch inputs stay on their device.
    """
    if isinstance(raw_speech, (np.ndarray, torch.Tensor)) and raw_speech.ndim == 2:
        batch = _validated(raw_speech, "raw_speech")
        if batch.numel() == 0:
            raise ValueError(f"raw_speech has shape {tuple(batch.shape)}: no clips or empty clips")
        clips = list(batch.unbind(0))
    else:
        clips = [_validated_clip(clip, index) for index, clip in enumerate(_clip_list(raw_speech))]
    _check_finite(clips)
    return clips


def _check_finite(clips: list[torch.Tensor]) -> None:
    """Raise naming the first clip with a NaN or infinite sample."""
    # A clip's sum is finite unless a sample is not (or the sum overflows): one cheap test before the exact ones.
    sums = torch.stack([clip.sum().to(clips[0].device) for clip in clips])
    if bool(torch.isfinite(sums).all()):
        return
    for index, clip in enumerate(clips):
        if not bool(torch.isfinite(clip).all()):
            raise ValueError(f"clip {index} contains NaN or infinite samples")


def _clip_list(raw_speech: RawSpeech) -> list[Any]:
    """Split a non-2-D input into its clips (not yet converted)."""
    if isinstance(raw_speech, (np.ndarray, torch.Tensor)):
        return [raw_speech]
    if not isinstance(raw_speech, (list, tuple)):
        raise ValueError(f"raw_speech must be a numpy array, a torch tensor or a list, got {type(raw_speech).__name__}")
    if not raw_speech:
        raise ValueError("raw_speech is an empty list: pass at least one clip")
    nested = [isinstance(item, (np.ndarray, torch.Tensor, list, tuple)) for item in raw_speech]
    if all(nested):
        return list(raw_speech)
    if any(nested):
        raise ValueError("raw_speech mixes numbers and arrays; pass one clip or a list of clips")
    return [raw_speech]


def _validated(samples: Any, name: str) -> torch.Tensor:
    """`to_float_waveform` with `name` prefixed to its error."""
    try:
        return to_float_waveform(samples)
    except ValueError as err:
        raise ValueError(f"{name}: {err}") from err


def _validated_clip(samples: Any, index: int) -> torch.Tensor:
    """One clip as a non-empty 1-D float32 tensor."""
    waveform = _validated(samples, f"clip {index}")
    if waveform.dim() != 1:
        raise ValueError(
            f"clip {index} has shape {tuple(waveform.shape)} ({waveform.dim()}-D): each clip must be 1-D mono audio; "
            "pass a clip, a list of clips or a 2-D (batch, samples) array, and pick one channel of multichannel audio"
        )
    if waveform.numel() == 0:
        raise ValueError(f"clip {index} is empty")
    return waveform


def _positive_int(value: object, name: str) -> int:
    """`value` as an int, or `ValueError` unless it is a positive integer."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _check_lengths(lengths: list[int], frame_size: int, resampled_from: int | None) -> None:
    """Every clip must hold at least one full frame."""
    for index, length in enumerate(lengths):
        if length < frame_size:
            where = f" after resampling from {resampled_from} Hz" if resampled_from else ""
            raise ValueError(
                f"clip {index} has {length} samples{where}, fewer than one {_FRAME_LENGTH_MS} ms frame "
                f"({frame_size} samples)"
            )


def _target_frames(strategy: str, frames: list[int], max_length: int, truncation: bool) -> int:
    """Number of output frames for the batch under a padding strategy."""
    if strategy == "do_not_pad":
        if len(set(frames)) > 1:
            raise ValueError(
                f"clips give different numbers of frames ({min(frames)} to {max(frames)}) and padding is off; "
                "pass padding='longest' or padding='max_length' to batch them"
            )
        target = frames[0]
    elif strategy == "longest":
        target = max(frames)
    else:
        target = max_length if truncation else max(max_length, max(frames))
    return min(target, max_length) if truncation else target


def _convert(data: dict[str, torch.Tensor], tensor_type: str | None) -> dict[str, Any]:
    """Return tensors as torch ("pt"), stacked numpy ("np") or lists of per-clip numpy arrays (None)."""
    if tensor_type == "pt":
        return data
    arrays = {key: value.cpu().numpy() for key, value in data.items()}
    if tensor_type == "np":
        return arrays
    return {key: list(value) for key, value in arrays.items()}
