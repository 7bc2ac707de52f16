"""AST feature extractor: batched pure-PyTorch Kaldi log-mel filter banks (no torchaudio needed).

The features are those of the original AST pipeline,
`torchaudio.compliance.kaldi.fbank(w, htk_compat=True, sample_frequency=16000, use_energy=False,
window_type="hanning", num_mel_bins=128, dither=0.0, frame_shift=10)`, padded with zeros in log-mel space (or
truncated) to a fixed number of frames and normalised as `(fbank - mean) / (2 * std)`.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterator, Sequence
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
# On CPU, frames are processed in chunks of about this many so the intermediates stay in cache.
_CPU_CHUNK_FRAMES = 2048

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
    filters catch a single FFT bin near their edge, and their weight (hence the log-mel value) is only reproduced to
    1e-4 when it is rounded the way Kaldi and torchaudio round it. Filters that cover no FFT bin are all zero.
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


@functools.lru_cache(maxsize=16)
def _fbank_constants(sampling_rate: int, num_mel_bins: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(symmetric Hann window (frame size,), mel matrix (n_fft // 2 + 1, num_mel_bins)), float32 on `device`."""
    spec = FrameSpec.for_rate(sampling_rate)
    window = torch.hann_window(spec.size, periodic=False, dtype=torch.float32)
    mel = kaldi_mel_banks(num_mel_bins, spec.n_fft, sampling_rate)
    return window.to(device), mel.to(device)


def kaldi_fbank(waveforms: torch.Tensor, sampling_rate: int = 16000, num_mel_bins: int = 128) -> torch.Tensor:
    """Kaldi log-mel filter banks of a batch of waveforms, as AST computes them, on the input's device.

    `waveforms`: (batch, samples) float32, at least one frame long. Returns (batch, frames, num_mel_bins) float32
    with frames = num_frames(samples). Per frame (25 ms, hop 10 ms, edges snipped): remove the frame's mean,
    pre-emphasise with 0.97 (first sample replicated), apply a symmetric Hann window, zero-pad to the FFT size, take
    the power spectrum, project on the Kaldi mel filters and take the log with a float32-epsilon floor. No dithering,
    no energy column. Differentiable; the whole batch is computed at once (in cache-sized chunks on CPU).
    """
    return torch.cat([chunk for _, chunk in _log_mel_chunks(waveforms, sampling_rate, num_mel_bins)])


def _log_mel_chunks(
    waveforms: torch.Tensor, sampling_rate: int, num_mel_bins: int
) -> Iterator[tuple[int, torch.Tensor]]:
    """Yield `(first clip index, kaldi_fbank of the clips from there)` over consecutive groups of clips.

    On CPU a group holds about `_CPU_CHUNK_FRAMES` frames, which keeps the intermediates in cache and is about twice
    as fast as one pass over a large batch; on other devices the batch is a single group.
    """
    if waveforms.dim() != 2 or not waveforms.is_floating_point():
        raise ValueError(f"expected a float (batch, samples) tensor, got {waveforms.dtype} {tuple(waveforms.shape)}")
    frames = num_frames(waveforms.shape[-1], sampling_rate)
    if frames == 0:
        raise ValueError(f"{waveforms.shape[-1]} samples are fewer than one frame at {sampling_rate} Hz")
    spec = FrameSpec.for_rate(sampling_rate)
    window, mel = _fbank_constants(sampling_rate, num_mel_bins, waveforms.device)
    waveforms = waveforms.to(torch.float32)
    step = max(1, _CPU_CHUNK_FRAMES // frames) if waveforms.device.type == "cpu" else waveforms.shape[0]
    for start in range(0, waveforms.shape[0], step):
        yield start, _log_mel(waveforms[start : start + step], spec, window, mel)


def _log_mel(waveforms: torch.Tensor, spec: FrameSpec, window: torch.Tensor, mel: torch.Tensor) -> torch.Tensor:
    """`kaldi_fbank` for one group of clips: (batch, samples) -> (batch, frames, mel bins).

    The steps run in Kaldi's order with Kaldi's float32 roundings (centre, then pre-emphasise, then window) because
    the lowest FFT bins come out of a cancellation and would otherwise drift by more than 1e-4 in log-mel.
    """
    frames = waveforms.unfold(-1, spec.size, spec.shift)  # (batch, frames, size), a view
    padded = waveforms.new_empty(*frames.shape[:-1], spec.n_fft)
    padded[..., spec.size :] = 0.0
    body = padded[..., : spec.size]
    torch.sub(frames, frames.mean(dim=-1, keepdim=True), out=body)
    # Pre-emphasis x[n] - 0.97 x[n - 1]; sample 0 keeps its centred value, which only meets the window's exact 0.
    body[..., 1:] -= body[..., :-1] * _PREEMPHASIS
    body *= window
    spectrum = torch.fft.rfft(padded)  # (batch, frames, n_fft // 2 + 1)
    power = spectrum.real.square().addcmul_(spectrum.imag, spectrum.imag)
    return torch.matmul(power, mel).clamp_min_(_LOG_FLOOR).log_()


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

        waveforms, lengths = _as_batch(raw_speech)
        if rate != self.sampling_rate:
            waveforms = resample(waveforms, rate, self.sampling_rate)
            lengths = [-(-self.sampling_rate * n // rate) for n in lengths]
        spec = FrameSpec.for_rate(self.sampling_rate)
        _check_lengths(lengths, spec.size, resampled_from=None if rate == self.sampling_rate else rate)

        frames = [num_frames(n, self.sampling_rate) for n in lengths]
        target = _target_frames(strategy, frames, limit, truncation)
        features, mask = self._padded_features(waveforms, frames, target)

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
        self, waveforms: torch.Tensor, frames: list[int], target: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalised features (batch, target, F) and the boolean real-frame mask (batch, target).

        Only the frames that survive truncation are computed; frames past each clip's end (including those computed
        from the zeros that pad shorter clips of the batch) are set to the normalised padding value.
        """
        spec = FrameSpec.for_rate(self.sampling_rate)
        computed = min(max(frames), target)
        needed = (computed - 1) * spec.shift + spec.size
        features = waveforms.new_empty(waveforms.shape[0], target, self.num_mel_bins)
        for start, chunk in _log_mel_chunks(waveforms[:, :needed], self.sampling_rate, self.num_mel_bins):
            features[start : start + chunk.shape[0], :computed] = self._normalize_(chunk)
        fill = self._normalize_(torch.tensor(float(self.padding_value))).item()
        for row, count in zip(features, frames):
            row[count:] = fill
        mask = torch.arange(target, device=features.device) < torch.tensor(frames, device=features.device)[:, None]
        return features, mask

    def _normalize_(self, fbank: torch.Tensor) -> torch.Tensor:
        """In place: (fbank - mean) / (2 * std) when `do_normalize`, else `fbank` unchanged."""
        if self.do_normalize:
            fbank.sub_(self.mean).div_(self.std * 2)
        return fbank


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


def _as_batch(raw_speech: RawSpeech) -> tuple[torch.Tensor, list[int]]:
    """Validate any accepted input and return it as a zero-padded (batch, max samples) float32 tensor + lengths.

    Errors name the offending clip. Torch inputs stay on their device (a list follows its first clip's device).
    """
    if isinstance(raw_speech, (np.ndarray, torch.Tensor)) and raw_speech.ndim == 2:
        batch = _validated(raw_speech, "raw_speech")
        if batch.numel() == 0:
            raise ValueError(f"raw_speech has shape {tuple(batch.shape)}: no clips or empty clips")
        lengths = [batch.shape[1]] * batch.shape[0]
    else:
        clips = [_validated_clip(clip, index) for index, clip in enumerate(_clip_list(raw_speech))]
        lengths = [clip.shape[0] for clip in clips]
        batch = clips[0].new_zeros(len(clips), max(lengths))
        for row, clip in zip(batch, clips):
            row[: clip.shape[0]] = clip.to(batch.device)
    _check_finite(batch)
    return batch.contiguous(), lengths


def _check_finite(batch: torch.Tensor) -> None:
    """Raise naming the first clip (row of `batch`) with a NaN or infinite sample."""
    # A row sum is finite unless a sample is not (or the sum overflows): a cheap test before the exact one.
    if bool(torch.isfinite(batch.sum(dim=1, dtype=torch.float64)).all()):
        return
    finite = torch.isfinite(batch).all(dim=1)
    if not bool(finite.all()):
        raise ValueError(f"clip {int((~finite).nonzero()[0, 0])} contains NaN or infinite samples")


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
