"""A deterministic, download-free sound-event dataset for trying out audio classifiers.

Eight classes of synthetic events, each placed at a random onset inside a 0.5-2 s clip over quiet white noise:

    tone            a steady sine, 300-3000 Hz
    rising_chirp    a sine sweeping up (200-800 Hz -> 2-5 kHz, exponential)
    falling_chirp   the same sweep downwards
    noise_burst     a burst of white noise
    click_train     5 ms clicks repeating 10-30 times per second
    am_tone         a sine pulsing on and off 6-12 times per second (full-depth amplitude modulation)
    harmonic_stack  4-9 harmonics of a 100-400 Hz fundamental (a buzzy, voice-like sound)
    background      the background noise alone, no event

Frequencies, durations, onsets, gains and the noise level are drawn at random per clip from a seeded generator, so the
same seed always writes byte-identical files. Output layout (paths in the manifests are relative to them):

    OUT_DIR/train.csv, OUT_DIR/eval.csv      columns `path,label`
    OUT_DIR/train/<label>/<label>_<i>.wav    16 kHz mono 16-bit PCM
    OUT_DIR/eval/<label>/<label>_<i>.wav

Usage: `python examples/synthetic_sounds.py OUT_DIR [--train_per_class 200] [--eval_per_class 15] [--seed 0]`.
Only numpy and soundfile are needed.
"""

from __future__ import annotations

import argparse
import csv
from collections.abc import Callable
from pathlib import Path

import numpy as np
import soundfile

SAMPLING_RATE = 16000
CLIP_SECONDS = (0.5, 2.0)
EVENT_SECONDS = (0.25, 1.2)
EVENT_PEAK_DB = (-20.0, -6.0)  # peak level of the event, dB re full scale
BACKGROUND_RMS_DB = (-60.0, -45.0)  # RMS level of the white background noise
FADE_SECONDS = 0.01

Synthesizer = Callable[[np.random.Generator, np.ndarray], np.ndarray]
"""Draws one event: (generator, time axis in seconds of the event's samples) -> waveform with peak ~1."""


def _tone(rng: np.random.Generator, t: np.ndarray) -> np.ndarray:
    return np.sin(2 * np.pi * rng.uniform(300, 3000) * t + rng.uniform(0, 2 * np.pi))


def _sweep(start_hz: float, end_hz: float, t: np.ndarray) -> np.ndarray:
    """Exponential sine sweep from `start_hz` to `end_hz` over the span of `t`."""
    duration = t[-1] + 1 / SAMPLING_RATE
    rate = np.log(end_hz / start_hz) / duration
    return np.sin(2 * np.pi * start_hz * np.expm1(rate * t) / rate)


def _rising_chirp(rng: np.random.Generator, t: np.ndarray) -> np.ndarray:
    return _sweep(rng.uniform(200, 800), rng.uniform(2000, 5000), t)


def _falling_chirp(rng: np.random.Generator, t: np.ndarray) -> np.ndarray:
    return _sweep(rng.uniform(2000, 5000), rng.uniform(200, 800), t)


def _noise_burst(rng: np.random.Generator, t: np.ndarray) -> np.ndarray:
    return rng.uniform(-1, 1, t.size)


def _click_train(rng: np.random.Generator, t: np.ndarray) -> np.ndarray:
    clicks = np.zeros(t.size)
    period = int(SAMPLING_RATE / rng.uniform(10, 30))
    click_length = int(0.005 * SAMPLING_RATE)  # 5 ms decaying noise clicks
    shape = rng.uniform(-1, 1, click_length) * np.exp(-np.arange(click_length) / (click_length / 2))
    for start in range(int(rng.integers(0, period)), t.size - click_length, period):
        clicks[start : start + click_length] = shape
    return clicks


def _am_tone(rng: np.random.Generator, t: np.ndarray) -> np.ndarray:
    # A squared raised cosine: short pulses with near-silent gaps between them.
    envelope = (0.5 - 0.5 * np.cos(2 * np.pi * rng.uniform(6, 12) * t)) ** 2
    return envelope * np.sin(2 * np.pi * rng.uniform(400, 2000) * t)


def _harmonic_stack(rng: np.random.Generator, t: np.ndarray) -> np.ndarray:
    fundamental = rng.uniform(100, 400)
    harmonics = np.arange(1, int(rng.integers(5, 11)))
    phases = rng.uniform(0, 2 * np.pi, harmonics.size)
    amplitudes = 1 / np.sqrt(harmonics[:, None])
    return (amplitudes * np.sin(2 * np.pi * fundamental * harmonics[:, None] * t + phases[:, None])).sum(0)


def _background(rng: np.random.Generator, t: np.ndarray) -> np.ndarray:
    return np.zeros(t.size)


CLASSES: dict[str, Synthesizer] = {
    "tone": _tone,
    "rising_chirp": _rising_chirp,
    "falling_chirp": _falling_chirp,
    "noise_burst": _noise_burst,
    "click_train": _click_train,
    "am_tone": _am_tone,
    "harmonic_stack": _harmonic_stack,
    "background": _background,
}
SPLITS = ("train", "eval")  # the index is part of every clip's seed


def _fade(num_samples: int) -> np.ndarray:
    """Raised-cosine fade-in/out envelope, so events start without a broadband click."""
    ramp = min(int(FADE_SECONDS * SAMPLING_RATE), num_samples // 2)
    envelope = np.ones(num_samples)
    if ramp:
        rise = 0.5 - 0.5 * np.cos(np.pi * np.arange(ramp) / ramp)
        envelope[:ramp] = rise
        envelope[num_samples - ramp :] = rise[::-1]
    return envelope


def synthesize_event(label: str, rng: np.random.Generator, num_samples: int) -> np.ndarray:
    """`num_samples` of one event of class `label` at 16 kHz, faded in and out, peak ~1 (before any gain)."""
    return CLASSES[label](rng, np.arange(num_samples) / SAMPLING_RATE) * _fade(num_samples)


def synthesize_clip(label: str, rng: np.random.Generator) -> np.ndarray:
    """One float32 clip of class `label` at 16 kHz: the event at a random onset and gain over background noise."""
    if label not in CLASSES:
        raise ValueError(f"unknown class {label!r}; choose from {sorted(CLASSES)}")
    clip_samples = int(rng.uniform(*CLIP_SECONDS) * SAMPLING_RATE)
    event_samples = int(min(rng.uniform(*EVENT_SECONDS), 0.9 * clip_samples / SAMPLING_RATE) * SAMPLING_RATE)
    onset = int(rng.integers(0, clip_samples - event_samples + 1))

    event = synthesize_event(label, rng, event_samples)
    peak = np.abs(event).max()
    if peak > 0:
        event *= 10 ** (rng.uniform(*EVENT_PEAK_DB) / 20) / peak
    clip = rng.normal(0, 10 ** (rng.uniform(*BACKGROUND_RMS_DB) / 20), clip_samples)
    clip[onset : onset + event_samples] += event
    return np.clip(clip, -1, 1).astype(np.float32)


def _write_split(out_dir: Path, split: str, per_class: int, seed: int) -> Path:
    """Writes `per_class` clips of every class under `out_dir/split` and returns the manifest `out_dir/split.csv`."""
    manifest = out_dir / f"{split}.csv"
    with manifest.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "label"])
        for class_index, label in enumerate(CLASSES):
            folder = out_dir / split / label
            folder.mkdir(parents=True, exist_ok=True)
            for clip_index in range(per_class):
                # One generator per clip: a clip depends only on (seed, split, class, index), not on the set's size.
                rng = np.random.default_rng([seed, SPLITS.index(split), class_index, clip_index])
                path = folder / f"{label}_{clip_index}.wav"
                soundfile.write(path, synthesize_clip(label, rng), SAMPLING_RATE, subtype="PCM_16")
                writer.writerow([path.relative_to(out_dir).as_posix(), label])
    return manifest


def generate_dataset(
    out_dir: str | Path, train_per_class: int = 200, eval_per_class: int = 15, seed: int = 0
) -> tuple[Path, Path]:
    """Writes the dataset under `out_dir` (see the module docstring) and returns the (train, eval) manifest paths."""
    for name, count in (("train_per_class", train_per_class), ("eval_per_class", eval_per_class)):
        if not isinstance(count, int) or count < 1:
            raise ValueError(f"{name} must be a positive integer, got {count!r}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    return (
        _write_split(out_dir, "train", train_per_class, seed),
        _write_split(out_dir, "eval", eval_per_class, seed),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir", type=Path, help="folder to write the wav files and train.csv/eval.csv into")
    parser.add_argument("--train_per_class", type=int, default=200, help="training clips per class (default 200)")
    parser.add_argument("--eval_per_class", type=int, default=15, help="evaluation clips per class (default 15)")
    parser.add_argument("--seed", type=int, default=0, help="random seed; the same seed writes identical files")
    args = parser.parse_args()
    train, evaluation = generate_dataset(args.out_dir, args.train_per_class, args.eval_per_class, args.seed)
    print(f"wrote {len(CLASSES)} classes: {train} and {evaluation}")


if __name__ == "__main__":
    main()
