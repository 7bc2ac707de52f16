"""AST feature extractor: the transformers-facing side of the Kaldi log-mel features (validation, padding, masks,
normalisation); the filter banks themselves are computed in `fbank`.

The features are those of the original AST pipeline (see `fbank.kaldi_fbank`), padded with zeros in log-mel space (or
truncated) to a fixed number of frames and normalised as `(fbank - mean) / (2 * std)`. Clips whose power spectrum could
overflow float32 (peaks above about 1e14 at 16 kHz; real audio is within [-1, 1] or integer PCM ranges) are resampled
and transformed in float64, so every finite input gives finite features: log-mel(c x) = log-mel(x) + 2 ln c holds at
any amplitude instead of turning into inf. (The original data loader also
subtracts each clip's mean first; Kaldi's per-frame DC removal cancels that up to float rounding, so, like
transformers' built-in extractor, this one does not.)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from transformers import BatchFeature, SequenceFeatureExtractor
from transformers.utils import TensorType, logging

from .audio_utils import check_sampling_rate, resample, to_float_waveform
from .fbank import FRAME_LENGTH_MS, FrameSpec, log_mel_into, num_frames

logger = logging.get_logger(__name__)

__all__ = ["ASTFeatureExtractor"]

_PADDING_STRATEGIES = ("max_length", "longest", "do_not_pad")

RawSpeech = np.ndarray | torch.Tensor | Sequence[float] | Sequence[np.ndarray | torch.Tensor | Sequence[float]]


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
        min_frames: int | None = None,
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
            min_frames: Pad the batch to at least this many frames, whatever `padding` and `truncation` say
                (`padding_value`, mask 0): the model's `patch_size` (16) is the least an AST accepts, so a clip
                shorter than one patch is padded as the fixed-length AST would pad it. The pipeline, the training
                collator and long-audio windows all pass it.

        Returns:
            `BatchFeature` with `input_values` (batch, frames, num_mel_bins) float32 and, if asked for,
            `attention_mask` (batch, frames) int64.

        Memory: besides the input, the features (4 bytes x frames x num_mel_bins: 66 kB per second at 16 kHz and 128
        bins, 184 MB for an hour with `truncation=False`), a float32 copy of inputs of other dtypes and a resampled
        copy at other rates; the filter-bank scratch is bounded whatever the length (about 8 MB on CPU, 0.5 GB on
        other devices; see `fbank.log_mel_into`). Measured on CPU: an untruncated 10-minute clip at 16 kHz raises the
        peak RSS by 20 MB (its features take 31 MB).
        """
        if kwargs:
            logger.warning(f"{type(self).__name__}.__call__ ignores the arguments {sorted(kwargs)}")
        strategy = _padding_strategy(padding)
        limit = _positive_int(self.max_length if max_length is None else max_length, "max_length")
        rate = self._input_rate(sampling_rate)
        tensor_type = _tensor_type(return_tensors)

        clips = _widened(_as_clips(raw_speech), _float32_safe_peak(self.sampling_rate))
        if rate != self.sampling_rate:
            clips = [resample(clip, rate, self.sampling_rate) for clip in clips]
        lengths = [clip.shape[0] for clip in clips]
        spec = FrameSpec.for_rate(self.sampling_rate)
        _check_lengths(lengths, spec.size, resampled_from=None if rate == self.sampling_rate else rate)

        frames = [num_frames(n, self.sampling_rate) for n in lengths]
        target = _target_frames(strategy, frames, limit, truncation)
        if min_frames is not None:
            target = max(target, _positive_int(min_frames, "min_frames"))
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
        if all(clip.dtype == torch.float32 for clip in clips):
            log_mel_into(features[:, :computed], clips, self.sampling_rate)
        else:  # some clips were widened to float64 (see `_widened`): each precision computed in its own pass
            for dtype in (torch.float32, torch.float64):
                indices = [index for index, clip in enumerate(clips) if clip.dtype == dtype]
                if indices:
                    part = features.new_empty(len(indices), computed, self.num_mel_bins, dtype=dtype)
                    log_mel_into(part, [clips[index] for index in indices], self.sampling_rate)
                    features[indices, :computed] = part.to(features.dtype)
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
        return list(batch.unbind(0))
    return [_validated_clip(clip, index) for index, clip in enumerate(_clip_list(raw_speech))]


def _widened(clips: list[torch.Tensor], safe_peak: float) -> list[torch.Tensor]:
    """The clips, those with a peak above `safe_peak` cast to float64; raises naming the first non-finite clip.

    One min/max pass per clip serves both checks (a NaN sample makes both NaN, an infinite one the peak infinite).
    """
    extremes = torch.stack([torch.stack(torch.aminmax(clip)).to(clips[0].device) for clip in clips])
    peaks = extremes.abs().amax(dim=1).tolist()
    for index, peak in enumerate(peaks):
        if not math.isfinite(peak):
            raise ValueError(
                f"clip {index} contains NaN or infinite samples (or samples beyond float32's range, +-3.4e38)"
            )
    return [clip.to(torch.float64) if peak > safe_peak else clip for clip, peak in zip(clips, peaks)]


def _float32_safe_peak(sampling_rate: int) -> float:
    """Largest sample magnitude for which no float32 step of the fbank (after resampling) can overflow.

    Bound: centring and pre-emphasis give |x| <= 4 peak, so each FFT part is <= 4 size peak, each power bin
    <= 2 (4 size peak)^2, and a mel energy (weights <= 1) sums at most n_fft / 2 + 1 bins. A further factor 4 covers
    the resampler's overshoot. At 16 kHz this is about 1.3e14.
    """
    spec = FrameSpec.for_rate(sampling_rate)
    bins = spec.n_fft // 2 + 1
    return math.sqrt(torch.finfo(torch.float32).max / (32 * bins * spec.size**2)) / 4


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
                f"clip {index} has {length} samples{where}, fewer than one {FRAME_LENGTH_MS} ms frame "
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
