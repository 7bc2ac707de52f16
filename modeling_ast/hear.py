"""The HEAR 2021 common API (https://hearbenchmark.com/hear-api.html) for any checkpoint this package loads.

    from modeling_ast import hear

    model = hear.load_model("path/or/hub-id")  # "" loads DEFAULT_MODEL
    embeddings, timestamps = hear.get_timestamp_embeddings(audio, model)  # (n, K, D) float32, (n, K) ms
    scene = hear.get_scene_embeddings(audio, model)  # (n, D) float32

`audio` is an (n_sounds, n_samples) float tensor in [-1, 1] at `model.sample_rate` (16 kHz), of any length. Both
embeddings come from the final encoder layer after its LayerNorm (`ASTModel.embed`), both of size D (768 for the
AudioSet models):

* Scene embedding: the clip embedding ([CLS] + [DIST]) / 2, the vector every AST classifier head reads, so it carries
  what the model learnt to say about a clip as a whole. The model sees a sound as it saw its training clips: the
  spectrogram from the first frame, padded at the end with the feature extractor's padding value up to
  `config.max_length` frames, without an attention mask (what `ASTFeatureExtractor` and the pipeline do by default).
  Longer sounds are cut into consecutive windows of `max_length` frames, the last one moved back to end at the last
  frame so that every window is full (the rule of `long_audio.plan_windows`), and their clip embeddings are averaged.
* Timestamp embeddings: the frequency mean of the final patch states of one time column of the patch grid. A column
  is 16 frames (175 ms of audio); its frequency rows describe that stretch together, and their mean keeps the size D
  instead of f * D (9216 for 12 rows), a size HEAR's shallow downstream models handle. The final layer is used because
  its patch states are contextual (every block attends across the window) and normalised like the clip embedding;
  whether an earlier layer serves HEAR's tasks better was not measured here.
  Columns are `time_stride` frames apart: 100 ms for the usual stride 10, too coarse for HEAR's 50 ms. Interpolating
  between columns would add timestamps but no time resolution, so instead the encoder runs `time_stride // hop`
  times per window on the spectrogram shifted by `hop` frames each time (`hop` the largest divisor of `time_stride`
  that is at most 50 ms: stride 10 gives 2 runs 50 ms apart, 12 gives 3 runs 40 ms apart, 14 gives 7 runs 20 ms
  apart, 16 gives 4 runs 40 ms apart). The runs' columns interleave into a regular grid in which every embedding is
  a column centred on its timestamp. Half a patch (8 frames) of padding frames (the padding value the model saw after
  short training clips) before the first frame centres the first column on the start of the sound: Kaldi frame i
  spans [10 i, 10 i + 25) ms, so at 16 kHz and stride 10 timestamp k is 7.5 + 50 k ms, up to the last one not after
  the end of the sound (computed from k, so long sounds do not drift).
  A run covers at most the `max_length` frames the positional grid was learned for (t0 columns), so a window holds
  runs * t0 timestamps (202, 10.1 s, for the AudioSet models); windows follow each other, the last one moved back to
  end at the end, and each timestamp comes from the first window that holds it, so its embedding depends only on the
  audio of that window. Every run is padded at the end to its full length, as training clips were.

Cost: `time_stride // hop` encoder passes per window for timestamp embeddings (2 for the usual checkpoints), one per
window for scene embeddings; windows go through the encoder `window_batch_size` at a time.

Sounds are independent: they share one length, so no padding mask is needed and no attention crosses sounds; a
sound's embeddings do not depend on its batch beyond float rounding. A sound shorter than one 25 ms frame has no
filter banks and is refused, as the feature extractor refuses it; shorter than a patch, it gets padding frames like
any window. Files become such tensors with `audio_io.load_audio(path, model.sample_rate)`, the loader every other
door uses, so a file's HEAR features are those the pipeline computes for it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .configuration_ast import ASTConfig
from .fbank import FrameSpec
from .feature_extraction_ast import ASTFeatureExtractor
from .long_audio import window_starts
from .modeling_ast import ASTModel

__all__ = [
    "DEFAULT_MODEL",
    "ASTHearModel",
    "TimestampGrid",
    "get_scene_embeddings",
    "get_timestamp_embeddings",
    "load_model",
]

DEFAULT_MODEL = "MIT/ast-finetuned-audioset-10-10-0.4593"
"""What `load_model("")` loads: the AudioSet AST of the paper (mAP 0.459), converted from transformers' format."""

_MAX_HOP_MS = 50  # HEAR asks for timestamps at most 50 ms apart (its onset tolerance for music transcription)
# HEAR audio is float in [-1, 1]. Resampling can overshoot full scale a little, so only peaks above twice full scale
# are refused: they come from integer PCM passed as float (x 32768 for int16), where log-mel features are off by ~20.
_MAX_PEAK = 2.0


@dataclass(frozen=True)
class TimestampGrid:
    """Geometry of the timestamp embeddings, in frames of the spectrogram padded with `left_pad` frames in front.

    Run r of a window starting at timestamp s reads `run_frames` frames from frame `hop_frames * (s + r)`; its column
    j is centred on timestamp s + r + runs * j.
    """

    hop_frames: int  # frames between consecutive timestamps
    runs: int  # encoder passes per window: time_stride // hop_frames
    columns: int  # time columns per run: those of the positional grid
    run_frames: int  # frames per run: time_stride * (columns - 1) + patch_size
    left_pad: int  # padding frames before the first frame: half a patch

    @property
    def window(self) -> int:
        """Timestamps per window."""
        return self.runs * self.columns


def _timestamp_grid(config: ASTConfig, frame: FrameSpec, sample_rate: int) -> TimestampGrid:
    """The grid for a model: the largest hop that divides `time_stride` and is at most `_MAX_HOP_MS`."""
    max_hop = max(1, _MAX_HOP_MS * sample_rate // (1000 * frame.shift))
    hop = max(d for d in range(1, min(max_hop, config.time_stride) + 1) if config.time_stride % d == 0)
    columns = config.patch_grid[1]
    return TimestampGrid(
        hop_frames=hop,
        runs=config.time_stride // hop,
        columns=columns,
        run_frames=config.time_stride * (columns - 1) + config.patch_size,
        left_pad=config.patch_size // 2,
    )


class ASTHearModel(nn.Module):
    """An AST encoder and its feature extractor, with the attributes HEAR reads.

    Attributes:
        sample_rate: rate the audio must have (the feature extractor's, 16000 for every AST checkpoint).
        scene_embedding_size, timestamp_embedding_size: the hidden size D.
        window_batch_size: windows per encoder pass; lower it to save memory, raise it for throughput.
        grid: the `TimestampGrid` (hop, runs and window of the timestamp embeddings).
    """

    def __init__(self, encoder: ASTModel, feature_extractor: ASTFeatureExtractor, window_batch_size: int = 8) -> None:
        super().__init__()
        config = encoder.config
        if feature_extractor.num_mel_bins != config.num_mel_bins:
            raise ValueError(
                f"the feature extractor makes {feature_extractor.num_mel_bins} mel bins but the model expects "
                f"{config.num_mel_bins}: they do not belong to the same checkpoint"
            )
        if isinstance(window_batch_size, bool) or not isinstance(window_batch_size, int) or window_batch_size < 1:
            raise ValueError(f"window_batch_size must be a positive integer, got {window_batch_size!r}")
        self.encoder = encoder.eval()
        self.feature_extractor = feature_extractor
        self.sample_rate = int(feature_extractor.sampling_rate)
        self.scene_embedding_size = int(config.hidden_size)
        self.timestamp_embedding_size = int(config.hidden_size)
        self.window_batch_size = window_batch_size
        self.frame = FrameSpec.for_rate(self.sample_rate)
        self.grid = _timestamp_grid(config, self.frame, self.sample_rate)

    def train(self, mode: bool = True) -> ASTHearModel:
        """Embeddings are inference only: the encoder stays in eval mode (no dropout, no patchout)."""
        super().train(mode)
        self.encoder.eval()
        return self

    def raw_features(self, audio: torch.Tensor) -> torch.Tensor:
        """Un-normalised log-mel filter banks (n_sounds, frames, F) of checked audio, on the model's device."""
        parameter = next(self.encoder.parameters())
        return self.feature_extractor(
            audio.to(parameter.device), sampling_rate=self.sample_rate, padding="do_not_pad", truncation=False,
            do_normalize=False, return_tensors="pt",
        )["input_values"]

    def padded(self, raw: torch.Tensor, before: int, length: int) -> torch.Tensor:
        """`raw` (n, T, F) with `before` padding frames in front and at least `length` frames in all, normalised."""
        after = max(0, length - before - raw.shape[1])
        padded = F.pad(raw, (0, 0, before, after), value=self.feature_extractor.padding_value)
        return self.feature_extractor.normalize(padded, inplace=True)

    def encode(self, features: torch.Tensor, starts: list[int], length: int, clip: bool) -> torch.Tensor:
        """Encoder outputs of the windows `features[:, start : start + length]` of every sound, sound-major.

        Returns (n_sounds, len(starts), D) clip embeddings if `clip`, else (n_sounds, len(starts), t, D) frequency
        means of the patch columns. Windows go through the encoder `window_batch_size` at a time.
        """
        parameter = next(self.encoder.parameters())
        windows = [features[sound, start : start + length] for sound in range(features.shape[0]) for start in starts]
        outputs = []
        with torch.no_grad():
            for first in range(0, len(windows), self.window_batch_size):
                batch = torch.stack(windows[first : first + self.window_batch_size])
                embedded = self.encoder.embed(batch.to(parameter.dtype))
                outputs.append(embedded.clip_embedding if clip else embedded.patch_embeddings.mean(dim=1))
        return torch.cat(outputs).float().unflatten(0, (features.shape[0], len(starts)))

    def timestamps(self, count: int) -> torch.Tensor:
        """Milliseconds (count,) float32: the centre of each timestamp's column, from its index (no drift)."""
        centre_x2 = self._first_centre_x2() + 2 * self._hop_samples() * torch.arange(count, dtype=torch.float64)
        return (centre_x2 * (500 / self.sample_rate)).float()

    def timestamp_count(self, num_samples: int) -> int:
        """Timestamps of a sound of `num_samples` samples: those centred within it (at least one)."""
        return max(1, (2 * num_samples - self._first_centre_x2()) // (2 * self._hop_samples()) + 1)

    def _first_centre_x2(self) -> int:
        """Twice the centre of the first column in samples (an integer): it spans the frames from -left_pad on."""
        return self.frame.centre_x2(-self.grid.left_pad, self.encoder.config.patch_size)

    def _hop_samples(self) -> int:
        return self.grid.hop_frames * self.frame.shift


def load_model(model_file_path: str | os.PathLike = "", window_batch_size: int = 8) -> ASTHearModel:
    """The HEAR model of a checkpoint: a directory or Hub id of any `ASTModel` or `ASTForAudioClassification`
    checkpoint (ours or transformers' built-in AST format; a classifier gives its encoder), with its
    preprocessor_config.json. "" loads `DEFAULT_MODEL`. The model is returned on the CPU in eval mode."""
    if not isinstance(model_file_path, (str, os.PathLike)):
        raise ValueError(f"model_file_path must be a directory or Hub id, got {type(model_file_path).__name__}")
    path = os.fspath(model_file_path) or DEFAULT_MODEL
    encoder = ASTModel.from_pretrained(path)
    try:
        feature_extractor = ASTFeatureExtractor.from_pretrained(path)
    except OSError as err:
        raise ValueError(
            f"{path} has no readable preprocessor_config.json (the feature extractor settings: mel bins, mean, std, "
            "max_length); save the checkpoint's ASTFeatureExtractor next to its weights"
        ) from err
    return ASTHearModel(encoder, feature_extractor, window_batch_size)


def get_timestamp_embeddings(audio: torch.Tensor, model: ASTHearModel) -> tuple[torch.Tensor, torch.Tensor]:
    """Embeddings (n_sounds, n_timestamps, D) float32 and their timestamps (n_sounds, n_timestamps) in ms, both on the
    model's device, at regular intervals of at most 50 ms (see the module docstring)."""
    audio = _checked_audio(audio, model)
    grid = model.grid
    count = model.timestamp_count(audio.shape[1])
    window_firsts = window_starts(count, grid.window, grid.window)
    runs = [(first, run) for first in window_firsts for run in range(grid.runs)]
    starts = [grid.hop_frames * (first + run) for first, run in runs]
    features = model.padded(model.raw_features(audio), grid.left_pad, max(starts) + grid.run_frames)
    columns = model.encode(features, starts, grid.run_frames, clip=False)  # (n, windows * runs, t0, D)

    # Timestamp of each column, and whether its window is the first to hold it.
    first = torch.tensor([first for first, _ in runs])[:, None]
    index = first + torch.tensor([run for _, run in runs])[:, None] + grid.runs * torch.arange(grid.columns)
    previous_end = torch.tensor([0] + [start + grid.window for start in window_firsts[:-1]])
    owner_start = previous_end.repeat_interleave(grid.runs)[:, None]
    keep = (index >= owner_start) & (index < count)
    embeddings = columns.new_full((columns.shape[0], count, columns.shape[-1]), float("nan"))  # NaN shows a gap
    embeddings[:, index[keep].to(columns.device)] = columns[:, keep.to(columns.device)]
    timestamps = model.timestamps(count).to(columns.device).repeat(audio.shape[0], 1)
    return embeddings, timestamps


def get_scene_embeddings(audio: torch.Tensor, model: ASTHearModel) -> torch.Tensor:
    """Embeddings (n_sounds, D) float32 on the model's device: the clip embedding, averaged over `max_length`-frame
    windows for longer sounds (see the module docstring)."""
    audio = _checked_audio(audio, model)
    length = model.encoder.config.max_length
    raw = model.raw_features(audio)
    starts = window_starts(raw.shape[1], length, length)
    return model.encode(model.padded(raw, 0, length), starts, length, clip=True).mean(dim=1)


def _checked_audio(audio: object, model: ASTHearModel) -> torch.Tensor:
    """`audio` as float32, or ValueError saying what HEAR expects."""
    if not isinstance(model, ASTHearModel):
        raise ValueError(f"model must be the ASTHearModel load_model returns, got {type(model).__name__}")
    if not isinstance(audio, torch.Tensor):
        raise ValueError(
            f"audio must be a torch.Tensor of shape (n_sounds, n_samples), got {type(audio).__name__} "
            "(use torch.from_numpy for a numpy array)"
        )
    if audio.dim() != 2 or 0 in audio.shape:
        raise ValueError(
            f"audio must be (n_sounds, n_samples) mono audio with at least one sound and one sample, got shape "
            f"{tuple(audio.shape)}"
        )
    if not audio.is_floating_point():
        raise ValueError(
            f"audio must be float samples in [-1, 1] at {model.sample_rate} Hz, got {audio.dtype} "
            "(divide int16 PCM by 32768)"
        )
    audio = audio.float()
    peaks = audio.abs().amax(dim=1)
    not_finite = (~torch.isfinite(peaks)).nonzero().flatten().tolist()
    if not_finite:
        raise ValueError(f"audio sounds {not_finite} contain NaN or infinite samples")
    too_loud = (peaks > _MAX_PEAK).nonzero().flatten().tolist()
    if too_loud:
        raise ValueError(
            f"audio sounds {too_loud} peak at {peaks.max().item():.4g}; HEAR audio is float in [-1, 1] (integer PCM "
            "must be scaled, e.g. int16 / 32768)"
        )
    return audio
