"""The one road for audio: every source the package accepts becomes a mono float32 waveform here.

Every door (the pipeline, long-audio windows, `ast-tag`, the training data, the demo) reads audio through this module,
so the same recording gives the same samples whichever way it comes in:

- **decoding**: soundfile (libsndfile) first; the ffmpeg binary, when installed, for what libsndfile cannot read
  (m4a, aac, ...). ffmpeg only decodes: it writes every channel at the file's own rate to a temporary float WAV file
  (RF64 beyond 4 GB), which soundfile then reads like any other, so bytes and pipes (which ffmpeg cannot seek)
  decode as files do;
- **channels**: the mean of the channels (`downmix`), as `datasets`' `Audio` feature and ffmpeg's `-ac 1` do for
  stereo. Keeping channel 0 (the original AST loader's choice) hears nothing of a recording whose left channel is
  silent, and scores the same file differently from a tool that averages;
- **rate**: always `audio_utils.resample` (never ffmpeg's resampler), so a file and its bytes agree to the sample.

`load_audio` decodes a whole source; `AudioFile` reads a local file window by window (a long recording never sits
in memory whole); `AUDIO_EXTENSIONS` is the one list of file types the folder and glob readers collect.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import tempfile
import warnings
import weakref
from collections.abc import Mapping, Sequence
from typing import Any, BinaryIO

import numpy as np
import soundfile
import torch

from .audio_utils import check_sampling_rate, resample, to_float_waveform

__all__ = ["AUDIO_EXTENSIONS", "AudioFile", "AudioSource", "audio_duration", "downmix", "is_audio_file", "load_audio",
           "read_audio", "source_name"]  # fmt: skip

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".opus", ".mp3", ".aiff", ".aif", ".m4a")
"""File types collected from folders and globs (compared lower-case): libsndfile's, and m4a through ffmpeg."""

AudioSource = (
    str | os.PathLike | bytes | bytearray | BinaryIO | Mapping[str, Any] | np.ndarray | torch.Tensor | Sequence[float]
)
"""A file path or http(s) URL, encoded bytes, a binary file object, a `{"raw" | "array", "sampling_rate"}` dict, a
`datasets` audio value (`{"bytes", "path"}`, `Audio(decode=False)`), or samples (1-D array, tensor or list)."""

_URL_PREFIXES = ("http://", "https://")
_DECODE_ERRORS = (RuntimeError, OSError, TypeError, ValueError, EOFError)
# Zero crossings of the resampling filter on each side (audio_utils.resample) plus slack, in units of the lower rate.
_RESAMPLING_MARGIN = 8


def is_audio_file(path: str | os.PathLike) -> bool:
    """Whether `path` has one of `AUDIO_EXTENSIONS` (any case)."""
    return os.path.splitext(os.fspath(path))[1].lower() in AUDIO_EXTENSIONS


def source_name(source: object) -> str:
    """How a source is named in messages: a path or URL as itself (quoted), anything else by its kind."""
    if isinstance(source, (str, os.PathLike)):
        return repr(os.fspath(source))
    if isinstance(source, Mapping) and isinstance(source.get("path"), str) and source["path"]:
        return repr(source["path"])
    if isinstance(source, (bytes, bytearray, memoryview)):
        return f"<{len(source)} bytes of encoded audio>"
    if hasattr(source, "read"):
        return repr(getattr(source, "name", f"<{type(source).__name__} object>"))
    return f"a {type(source).__name__} input"


def load_audio(source: AudioSource, sampling_rate: int = 16000) -> torch.Tensor:
    """The mono waveform of `source` at `sampling_rate` Hz: a float32 (samples,) tensor.

    Samples given without a rate (an array, tensor or list) are taken to be at `sampling_rate` already; tensors keep
    their device. Raises ValueError naming the source when it cannot be read, holds no samples or holds NaN or
    infinite samples; warns, naming it, when a file's header announces more data than the file holds.
    """
    target = check_sampling_rate(sampling_rate)  # a bad rate is the caller's error, not the source's
    waveform, rate = _decode(source, default_rate=target)
    return resample(_checked(waveform, source), rate, target)


def read_audio(source: AudioSource) -> tuple[torch.Tensor, int]:
    """The mono waveform of `source` at its own rate, and that rate (see `load_audio`; samples need a rate here)."""
    waveform, rate = _decode(source, default_rate=None)
    return _checked(waveform, source), rate


def audio_duration(source: object) -> float:
    """Seconds of audio in a source when cheap to know (a file header, an array's length), else 0.0 (never raises:
    an unreadable source is reported when it is decoded)."""
    try:
        if isinstance(source, (str, os.PathLike)):
            return soundfile.info(os.fspath(source)).duration
        if isinstance(source, Mapping) and "sampling_rate" in source:
            samples = source["raw"] if "raw" in source else source["array"]
            return len(samples) / source["sampling_rate"]
    except Exception:  # noqa: BLE001  (a missing file, a format only ffmpeg reads, a malformed dict)
        return 0.0
    return 0.0


def downmix(data: np.ndarray) -> np.ndarray:
    """(samples, channels) float32 -> (samples,) float32: the mean of the channels (channel 0 itself for mono)."""
    if data.shape[1] == 1:
        return np.ascontiguousarray(data[:, 0])
    return data.mean(axis=1, dtype=np.float32)


def _checked(waveform: torch.Tensor, source: object) -> torch.Tensor:
    if waveform.numel() == 0:
        raise ValueError(f"audio {source_name(source)} contains no samples")
    if not bool(torch.isfinite(waveform).all()):
        raise ValueError(f"audio {source_name(source)} contains NaN or infinite samples")
    return waveform


def _decode(source: AudioSource, default_rate: int | None) -> tuple[torch.Tensor, int]:
    """(mono float32 waveform, its rate) of any source; samples without a rate are at `default_rate`."""
    if isinstance(source, str) and source.startswith(_URL_PREFIXES):
        return _decode_bytes(_fetch(source), source)
    if isinstance(source, (str, os.PathLike)):
        return _decode_file(os.fspath(source))
    if isinstance(source, (bytes, bytearray, memoryview)):
        return _decode_bytes(bytes(source), source_name(source))
    if hasattr(source, "read"):
        return _decode_bytes(source.read(), source_name(source))
    if isinstance(source, Mapping):
        return _decode_mapping(source, default_rate)
    if hasattr(source, "get_all_samples"):  # a torchcodec AudioDecoder, what `datasets` >= 4 decodes audio into
        samples = source.get_all_samples()
        return torch.from_numpy(downmix(samples.data.numpy().T.astype(np.float32))), int(samples.sample_rate)
    if default_rate is None:
        raise ValueError('samples need their rate: pass {"raw": samples, "sampling_rate": rate}')
    return _samples(source), default_rate


def _decode_mapping(source: Mapping[str, Any], default_rate: int | None) -> tuple[torch.Tensor, int]:
    """A `{"raw" | "array", "sampling_rate"}` dict, or a `datasets` audio value `{"bytes", "path"}`."""
    samples = source["raw"] if "raw" in source else source.get("array")
    if samples is not None:
        if "sampling_rate" not in source:
            raise ValueError(f'a dict of samples needs their "sampling_rate"; got keys {sorted(source)}')
        return _samples(samples), check_sampling_rate(source["sampling_rate"])
    if source.get("bytes") is not None:
        return _decode_bytes(bytes(source["bytes"]), source_name(source))
    if source.get("path"):
        return _decode_file(os.fspath(source["path"]))
    raise ValueError(
        'a dict input needs the samples under "raw" (or "array", as in datasets) and their "sampling_rate", or '
        f'encoded audio under "bytes" or a file under "path"; got keys {sorted(source)}'
    )


def _samples(samples: Any) -> torch.Tensor:
    waveform = to_float_waveform(samples)
    if waveform.dim() != 1:
        raise ValueError(
            f"expected one mono clip (a 1-D array), got shape {tuple(waveform.shape)}; pick a channel or average them "
            "first"
        )
    return waveform


def _fetch(url: str) -> bytes:
    """The bytes behind an http(s) URL, fetched as transformers' pipeline fetches them."""
    import httpx

    try:
        response = httpx.get(url, follow_redirects=True)
        response.raise_for_status()
    except httpx.HTTPError as err:
        raise ValueError(f"could not download audio {url!r}: {err}") from err
    return response.content


def _decode_file(name: str) -> tuple[torch.Tensor, int]:
    if not os.path.isfile(name):
        raise ValueError(f"audio file {name!r} does not exist (or is not a file)")
    try:
        data, rate = _soundfile_read(name, f"file {name!r}")
    except _DECODE_ERRORS as soundfile_error:
        with _ffmpeg_decoded(name, f"file {name!r}", soundfile_error) as decoded:
            data, rate = _soundfile_read(decoded, f"file {name!r}")
    return torch.from_numpy(downmix(data)), rate


def _decode_bytes(data: bytes, name: str) -> tuple[torch.Tensor, int]:
    """Encoded audio held in memory; what libsndfile cannot read goes through a temporary file to ffmpeg."""
    try:
        samples, rate = _soundfile_read(io.BytesIO(data), name)
    except _DECODE_ERRORS as soundfile_error:
        with tempfile.TemporaryDirectory(prefix="modeling_ast-") as folder:
            encoded = os.path.join(folder, "encoded")
            with open(encoded, "wb") as handle:
                handle.write(data)
            with _ffmpeg_decoded(encoded, name, soundfile_error) as decoded:
                samples, rate = _soundfile_read(decoded, name)
    return torch.from_numpy(downmix(samples)), rate


def _soundfile_read(file: str | BinaryIO, name: str) -> tuple[np.ndarray, int]:
    """(samples, channels) float32 and the rate; warns when the header announces more data than present."""
    with soundfile.SoundFile(file) as handle:
        _warn_if_truncated(handle, name)
        return handle.read(dtype="float32", always_2d=True), handle.samplerate


def _warn_if_truncated(handle: soundfile.SoundFile, name: str) -> None:
    """Warn, naming the file, when libsndfile found fewer bytes than the header announces ("should be")."""
    if "should be" in getattr(handle, "extra_info", ""):
        warnings.warn(
            f"audio {name} is truncated: its header announces more data than the file holds; "
            f"using the {handle.frames} samples present",
            stacklevel=4,
        )


class _ffmpeg_decoded:  # noqa: N801  (used as a context manager, named like one)
    """`with _ffmpeg_decoded(path, name, why) as decoded:` a temporary float32 WAV file (RF64 beyond WAV's 4 GB) of
    every channel of `path`'s first audio stream at its own rate, removed on exit. Raises ValueError naming the
    source with soundfile's reason `why` and ffmpeg's when ffmpeg is missing or cannot decode it."""

    def __init__(self, path: str, name: str, why: BaseException) -> None:
        self.path, self.name, self.why = path, name, why
        self.folder: str | None = None

    def __enter__(self) -> str:
        self.folder = tempfile.mkdtemp(prefix="modeling_ast-")
        decoded = os.path.join(self.folder, "decoded.wav")
        try:
            _ffmpeg_to_wav(self.path, decoded)
        except ValueError as ffmpeg_error:
            self.__exit__()
            raise ValueError(
                f"could not read audio {self.name}: {self.why}; ffmpeg could not decode it either: {ffmpeg_error}"
            ) from ffmpeg_error
        return decoded

    def __exit__(self, *exc_info: object) -> None:
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder = None


def _ffmpeg_to_wav(path: str, output: str) -> None:
    if shutil.which("ffmpeg") is None:
        raise ValueError("ffmpeg is not installed (Debian/Ubuntu package ffmpeg)")
    command = ["ffmpeg", "-nostdin", "-v", "error", "-y", "-i", path, "-map", "0:a:0", "-c:a", "pcm_f32le",
               "-rf64", "auto", "-f", "wav", output]  # fmt: skip
    result = subprocess.run(command, capture_output=True, check=False)
    if result.returncode != 0:
        lines = result.stderr.decode(errors="replace").strip().splitlines()
        raise ValueError(lines[-1] if lines else f"ffmpeg exited with status {result.returncode}")


class AudioFile:
    """A local audio file read window by window at `sampling_rate`, mono (`downmix`), in bounded memory.

    `read(start, end)` equals the same span of `load_audio(path, sampling_rate)` (to float rounding): each read decodes
    the window plus the resampling filter's reach, starting on a sample where the two rates' grids meet, with zeros
    beyond the file's ends as the whole-file resampler has. A format libsndfile cannot read is decoded once by ffmpeg
    into a temporary float WAV file (every channel at the file's rate: disk, not memory), removed when this object is
    closed or collected. Errors are ValueErrors naming the file.
    """

    def __init__(self, path: str | os.PathLike, sampling_rate: int) -> None:
        self.path = os.fspath(path)
        self.sampling_rate = check_sampling_rate(sampling_rate)
        if not os.path.isfile(self.path):
            raise ValueError(f"audio file {self.path!r} does not exist (or is not a file)")
        self._readable = self.path
        try:
            self._open_header()
        except _DECODE_ERRORS as soundfile_error:
            decoded = _ffmpeg_decoded(self.path, f"file {self.path!r}", soundfile_error)
            self._readable = decoded.__enter__()
            self._cleanup = weakref.finalize(self, decoded.__exit__)
            self._open_header()
        if self.file_frames == 0:
            raise ValueError(f"audio {self.path!r} contains no samples")
        self.num_samples = -(-self.file_frames * self.sampling_rate // self.file_rate)
        gcd = np.gcd(self.file_rate, self.sampling_rate)
        self._file_step, self._target_step = self.file_rate // gcd, self.sampling_rate // gcd
        reach = _RESAMPLING_MARGIN * self.file_rate / min(self.file_rate, self.sampling_rate)
        self._margin_blocks = int(np.ceil(reach / self._file_step)) + 1

    def _open_header(self) -> None:
        with soundfile.SoundFile(self._readable) as handle:
            _warn_if_truncated(handle, f"file {self.path!r}")
            self.file_rate, self.file_frames = handle.samplerate, handle.frames

    def read(self, start: int, end: int) -> torch.Tensor:
        """Samples [start, end) at `sampling_rate`, as float32."""
        first_block = start // self._target_step - self._margin_blocks
        last_block = -(-end // self._target_step) + self._margin_blocks
        segment = self._read_span(first_block * self._file_step, last_block * self._file_step)
        resampled = resample(segment, self.file_rate, self.sampling_rate)
        offset = start - first_block * self._target_step
        return resampled[offset : offset + end - start]

    def _read_span(self, file_start: int, file_end: int) -> torch.Tensor:
        """File samples [file_start, file_end), downmixed, with zeros outside the file."""
        lo, hi = max(file_start, 0), min(file_end, self.file_frames)
        try:
            with soundfile.SoundFile(self._readable) as handle:
                handle.seek(lo)
                data = downmix(handle.read(hi - lo, dtype="float32", always_2d=True))
        except _DECODE_ERRORS as err:  # changed or removed since it was opened
            raise ValueError(f"could not read audio file {self.path!r}: {err}") from err
        if not np.isfinite(data).all():
            raise ValueError(f"audio {self.path!r} contains NaN or infinite samples")
        padded = np.zeros(file_end - file_start, dtype=np.float32)
        padded[lo - file_start : lo - file_start + len(data)] = data
        return torch.from_numpy(padded)
