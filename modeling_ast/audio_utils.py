"""Waveform arithmetic for AST: rate checks, dtype conversion and band-limited resampling, in plain PyTorch/NumPy
(torchaudio is never needed). Reading audio from files, bytes and other sources is `audio_io`'s job."""

from __future__ import annotations

import functools
import math
import numbers
from collections.abc import Sequence

import numpy as np
import torch

__all__ = ["IncrementalResampler", "check_sampling_rate", "resample", "to_float_waveform"]

# Integer PCM formats and the offset/scale that maps them onto [-1, 1).
_PCM_SCALES: dict[str, tuple[float, float]] = {
    "int8": (0.0, 128.0),
    "uint8": (128.0, 128.0),
    "int16": (0.0, 32768.0),
    "int32": (0.0, 2.0**31),
}
_TORCH_PCM_DTYPES: dict[torch.dtype, str] = {
    torch.int8: "int8",
    torch.uint8: "uint8",
    torch.int16: "int16",
    torch.int32: "int32",
}

# Windowed-sinc design of the resampler (the defaults of torchaudio.functional.resample).
_LOWPASS_FILTER_WIDTH = 6
_ROLLOFF = 0.99


def check_sampling_rate(rate: object, name: str = "sampling_rate") -> int:
    """Return `rate` as a Python int, or raise `ValueError` unless it is a positive whole number of Hz.

    Integral floats such as `16000.0` are accepted; booleans, fractions and non-numbers are not.
    """
    if isinstance(rate, bool) or not isinstance(rate, numbers.Real):
        raise ValueError(f"{name} must be a positive integer number of Hz, got {rate!r}")
    if isinstance(rate, numbers.Integral):
        value = int(rate)
    elif float(rate).is_integer():
        value = int(rate)
    else:
        raise ValueError(f"{name} must be a whole number of Hz, got {rate!r}")
    if value <= 0:
        raise ValueError(f"{name} must be positive, got {rate!r}")
    return value


def to_float_waveform(x: np.ndarray | torch.Tensor | Sequence[float]) -> torch.Tensor:
    """Convert audio samples of any shape to a float32 tensor (same shape; torch inputs keep their device).

    Integer PCM is scaled into [-1, 1): int8 / 128, uint8 (x - 128) / 128, int16 / 32768, int32 / 2**31.
    Floating-point input (float16/bfloat16/float32/float64) is only cast. Python lists are taken as sample values
    (integers in a list are not treated as PCM). Other dtypes (bool, complex, int64, strings, objects) raise
    `ValueError` naming the dtype, as do sparse and meta tensors (no samples to read). Tensors that require grad are
    detached: features are not differentiable.
    """
    if isinstance(x, torch.Tensor):
        return _tensor_to_float(x)
    if isinstance(x, np.ndarray):
        return _array_to_float(x)
    if isinstance(x, (list, tuple)):
        try:
            array = np.asarray(x)
        except ValueError as err:  # ragged nesting
            raise ValueError(f"audio samples must form a rectangular array: {err}") from err
        if array.dtype.kind in "iu":
            array = array.astype(np.float64)
        return _array_to_float(array)
    raise ValueError(f"audio must be a numpy array, a torch tensor or a list of floats, got {type(x).__name__}")


def _array_to_float(array: np.ndarray) -> torch.Tensor:
    """NumPy branch of `to_float_waveform`."""
    if array.dtype.kind == "f":
        with np.errstate(over="ignore"):  # float64 beyond float32's range becomes inf, which callers reject
            return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))
    if array.dtype.name in _PCM_SCALES:
        offset, scale = _PCM_SCALES[array.dtype.name]
        # np.asarray: arithmetic on a 0-D array returns a numpy scalar, which torch.from_numpy refuses
        return torch.from_numpy(np.asarray((array.astype(np.float64) - offset) / scale, dtype=np.float32))
    raise ValueError(_dtype_message(str(array.dtype)))


def _tensor_to_float(tensor: torch.Tensor) -> torch.Tensor:
    """Torch branch of `to_float_waveform`."""
    if tensor.layout != torch.strided:
        raise ValueError(f"audio tensors must be dense, got layout {tensor.layout}: call .to_dense() first")
    if tensor.device.type == "meta":
        raise ValueError("audio is a meta tensor, which holds no samples: pass a tensor on a real device")
    tensor = tensor.detach()
    if tensor.is_floating_point():
        return tensor.to(torch.float32)
    if tensor.dtype in _TORCH_PCM_DTYPES:
        offset, scale = _PCM_SCALES[_TORCH_PCM_DTYPES[tensor.dtype]]
        return ((tensor.to(torch.float64) - offset) / scale).to(torch.float32)
    raise ValueError(_dtype_message(str(tensor.dtype)))


def _dtype_message(dtype: str) -> str:
    return (
        f"unsupported audio dtype {dtype}: expected floating point samples or integer PCM "
        "(int8, uint8, int16, int32)"
    )


# Largest polyphase filter bank kept per rate pair (phases x taps): common ratios (44.1 -> 16 kHz: 160 x 1331) fit
# easily; odd rates such as 16001 Hz would need 16000 phases x 16015 taps (2 GB), so they take the direct path.
_MAX_POLYPHASE_TAPS = 1 << 20
# Output samples per block of the direct path: bounds its (block, taps) index and weight tensors.
_DIRECT_BLOCK_TAPS = 1 << 20


def _filter_size(orig: int, new: int) -> tuple[float, int]:
    """Cut-off (cycles per input sample, times 2) and half-width in input samples of the filter for `new / orig`."""
    cutoff = _ROLLOFF * min(orig, new) / orig
    return cutoff, math.ceil(_LOWPASS_FILTER_WIDTH / cutoff)


def _sinc_weights(offsets: torch.Tensor, cutoff: float) -> torch.Tensor:
    """Hann-windowed sinc filter taps at `offsets` (input samples from the output instant, float64).

    `cutoff` is the cut-off frequency in cycles per input sample, times 2 (0.99 of the lower Nyquist frequency); the
    filter spans `_LOWPASS_FILTER_WIDTH` zero crossings on each side and has unit gain at DC.
    """
    x = (offsets * cutoff).clamp(-_LOWPASS_FILTER_WIDTH, _LOWPASS_FILTER_WIDTH)
    window = torch.cos(x * (math.pi / (2 * _LOWPASS_FILTER_WIDTH))) ** 2
    return torch.special.sinc(x) * window * cutoff


@functools.lru_cache(maxsize=32)
def _sinc_kernel(orig: int, new: int, device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, int]:
    """Polyphase filters for resampling by `new / orig` (both already divided by their gcd).

    Returns `(kernel, width)`: `kernel` has shape (new, 1, 2 * width + orig), one filter per output phase, and is
    applied with stride `orig` to the input padded by `width` zeros on the left and `width + orig` on the right.
    Output sample `j` of a block lies `j * orig / new` input samples after the block start; tap `n` reads the input
    `n - width` samples after it. Designed in float64, returned in `dtype` on `device`; at most
    `_MAX_POLYPHASE_TAPS` elements (the caller checks), so the cache stays small.
    """
    cutoff, width = _filter_size(orig, new)
    taps = torch.arange(-width, width + orig, dtype=torch.float64)
    phases = torch.arange(new, dtype=torch.float64)[:, None] * (orig / new)
    kernel = _sinc_weights(taps - phases, cutoff)
    return kernel.unsqueeze(1).to(device=device, dtype=dtype), width


def _uses_polyphase(orig: int, new: int) -> bool:
    """Whether the filter bank for `new / orig` (gcd-reduced) is small enough to tabulate."""
    _, width = _filter_size(orig, new)
    return new * (2 * width + orig) <= _MAX_POLYPHASE_TAPS


def _polyphase_resample(flat: torch.Tensor, orig: int, new: int) -> torch.Tensor:
    """(batch, 1, time) -> (batch, blocks * new): one strided convolution with the cached filter bank."""
    kernel, width = _sinc_kernel(orig, new, flat.device, flat.dtype)
    return _polyphase_blocks(torch.nn.functional.pad(flat, (width, width + orig)), kernel, orig)


def _polyphase_blocks(padded: torch.Tensor, kernel: torch.Tensor, orig: int) -> torch.Tensor:
    """(batch, 1, time) input, already padded as `_sinc_kernel` says -> (batch, blocks * new) output samples."""
    blocks = torch.nn.functional.conv1d(padded, kernel, stride=orig)  # (batch, new, blocks)
    return blocks.transpose(1, 2).reshape(padded.shape[0], -1)


def _direct_resample(flat: torch.Tensor, orig: int, new: int, out_length: int) -> torch.Tensor:
    """(batch, 1, time) -> (batch, out_length): each output sample's filter taps evaluated where they fall.

    The same filter as the polyphase path, for ratios with too many phases to tabulate: output `j` sits at input
    position `j * orig / new` (exact integer part and remainder), and its taps are computed for that position.
    Memory is bounded by `_DIRECT_BLOCK_TAPS` whatever the rates; work is proportional to output samples x taps.
    """
    cutoff, width = _filter_size(orig, new)
    taps = torch.arange(-width, width + 2, device=flat.device)
    signal = torch.nn.functional.pad(flat[:, 0], (width, width + 2))  # index i of the input is signal[i + width]
    block = max(1, _DIRECT_BLOCK_TAPS // taps.numel())
    out = flat.new_empty(flat.shape[0], out_length)
    for start in range(0, out_length, block):
        j = torch.arange(start, min(start + block, out_length), device=flat.device, dtype=torch.int64)
        base, remainder = (j * orig) // new, (j * orig) % new
        offsets = taps.to(torch.float64) - (remainder.to(torch.float64) / new)[:, None]  # (block, taps)
        weights = _sinc_weights(offsets, cutoff).to(flat.dtype)
        gathered = signal[:, base[:, None] + taps + width]  # (batch, block, taps)
        out[:, start : start + j.numel()] = (gathered * weights).sum(dim=-1)
    return out


def resample(waveform: torch.Tensor, orig_freq: int, new_freq: int) -> torch.Tensor:
    """Band-limited resampling of `waveform` (..., time) from `orig_freq` to `new_freq` Hz.

    Hann-windowed sinc interpolation with 6 zero crossings per side and a cutoff at 0.99 of the lower Nyquist
    frequency, i.e. the formula of `torchaudio.functional.resample` with its defaults. The rates are reduced by their
    gcd; common ratios run as one strided convolution with a cached polyphase filter bank, ratios with more phases
    than that bank may hold (odd rates such as 16001 Hz) evaluate each output's taps directly, in bounded memory.
    Batched over all leading dimensions, on the tensor's device and in its (floating-point) dtype. Output shape:
    (..., ceil(new_freq * time / orig_freq)). Equal rates return the input unchanged.
    """
    orig = check_sampling_rate(orig_freq, "orig_freq")
    new = check_sampling_rate(new_freq, "new_freq")
    if not isinstance(waveform, torch.Tensor) or not waveform.is_floating_point():
        raise ValueError("resample expects a floating-point torch.Tensor; convert with to_float_waveform first")
    if waveform.dim() == 0:
        raise ValueError("resample expects a tensor with a time dimension, got a scalar")
    if orig == new:
        return waveform
    gcd = math.gcd(orig, new)
    orig, new = orig // gcd, new // gcd
    leading, length = waveform.shape[:-1], waveform.shape[-1]
    flat = waveform.reshape(-1, 1, length)
    out_length = -(-new * length // orig)
    if _uses_polyphase(orig, new):
        out = _polyphase_resample(flat, orig, new)[:, :out_length]
    else:
        out = _direct_resample(flat, orig, new, out_length)
    return out.reshape(*leading, out_length)


class IncrementalResampler:
    """`resample` of an endless mono stream fed in chunks of any size, in bounded memory.

    `push(chunk)` returns every output sample whose filter taps have all arrived; `flush()` ends the stream (zeros
    beyond its end, as `resample` pads) and returns the rest. The concatenated outputs equal `resample` of the whole
    stream to float rounding: the same polyphase filter bank, applied block by block to the same zero-padded input.
    The state is the input not yet consumed: under one filter length (2 x width + one block of input samples).
    Rate pairs that `resample` handles on its direct path (too many phases to tabulate, such as 16001 Hz -> 16 kHz)
    are refused with a ValueError naming the rates: resample such audio offline, or capture at a common rate.
    """

    def __init__(self, orig_freq: int, new_freq: int) -> None:
        self.orig_freq = check_sampling_rate(orig_freq, "orig_freq")
        self.new_freq = check_sampling_rate(new_freq, "new_freq")
        gcd = math.gcd(self.orig_freq, self.new_freq)
        self._orig, self._new = self.orig_freq // gcd, self.new_freq // gcd
        if not _uses_polyphase(self._orig, self._new):
            raise ValueError(
                f"streaming cannot resample {self.orig_freq} Hz to {self.new_freq} Hz: the ratio "
                f"{self._new}/{self._orig} has too many phases for a filter bank; resample offline "
                "(audio_utils.resample) or capture at a common rate such as 16000, 44100 or 48000 Hz"
            )
        self._kernel, self._width = _sinc_kernel(self._orig, self._new, torch.device("cpu"), torch.float32)
        self._pending = torch.zeros(self._width)  # the input from the next block's first tap on, zero-padded left
        self._received = 0
        self._emitted = 0
        self._flushed = False

    def push(self, chunk: torch.Tensor) -> torch.Tensor:
        """Output samples (float32, 1-D) made final by the 1-D float32 `chunk`; empty until a block is complete."""
        if self._flushed:
            raise ValueError("this resampler's stream has ended (flush was called); start a new one")
        if self._orig == self._new:
            self._received += chunk.shape[0]
            return chunk
        self._pending = torch.cat([self._pending, chunk])
        self._received += chunk.shape[0]
        return self._blocks()

    def flush(self) -> torch.Tensor:
        """The remaining output samples: the stream's length x new / orig in all, rounded up, as `resample` gives."""
        if self._flushed:
            raise ValueError("this resampler's stream has ended (flush was called); start a new one")
        self._flushed = True
        if self._orig == self._new:
            return torch.zeros(0)
        self._pending = torch.cat([self._pending, torch.zeros(self._width + self._orig)])
        remaining = -(-self._new * self._received // self._orig) - self._emitted
        return self._blocks()[:remaining]

    def _blocks(self) -> torch.Tensor:
        """Every block of output whose taps are all in `_pending`; the consumed input is dropped."""
        taps = 2 * self._width + self._orig
        count = (self._pending.shape[0] - taps) // self._orig + 1
        if count <= 0:
            return torch.zeros(0)
        used = self._pending[: (count - 1) * self._orig + taps]
        out = _polyphase_blocks(used[None, None], self._kernel, self._orig)[0]
        self._pending = self._pending[count * self._orig :].clone()
        self._emitted += out.shape[0]
        return out
