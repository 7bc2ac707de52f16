"""Deterministic strong-labelled soundscapes of spoken digits, for training and evaluating sound event detection.

Each soundscape is 10 s of 16 kHz mono audio:

- background: white, pink or brown Gaussian noise (power spectrum 1/f^0, 1/f, 1/f^2 from 20 Hz up; nothing below, where
  inaudible rumble would hold most of brown noise's power) at an RMS level of -50 dB re full scale, plus 0-2
  distractors: non-speech events of the demo data (`synthetic_sounds.py`: tones, chirps, noise bursts, click trains,
  pulsing tones, harmonic stacks), 0.25-1.2 s long, at 6-30 dB above the noise;
- events: 0-4 recordings of the Free Spoken Digit Dataset (`{digit}_{speaker}_{take}.wav`), of distinct digits (so
  events of one class never overlap; events of different digits may), at random onsets on a 1 ms grid, each at a
  signal-to-noise ratio of 6-30 dB (uniform; the range of the DESED and URBAN-SED synthetic soundscapes): the RMS of
  the placed recording over the RMS of the background noise (distractors not counted). Labels: "zero" .. "nine".
- event span: a recording is trimmed to its audible part, from its first to its last 10 ms frame whose energy is
  within 30 dB of its loudest frame; onset and offset are where that trimmed audio starts and ends, exactly.
- a soundscape whose peak would exceed 0.99 is scaled down as a whole (levels change, signal-to-noise ratios do not).

The background level is fixed, so a digit's level varies by its SNR alone (24 dB). Drawing the noise level too (from
-60 to -40 dB, an earlier version) spread digit levels over 44 dB, and a small AST from scratch then did not learn the
digits at all: a clip classifier on 1.28 s crops of such digits stayed at chance (10 %) after 450 steps, against 28 %
with the fixed level (the same steps and model).

Split by speaker: the recordings of `eval_speakers` (default theo and yweweler) make the evaluation soundscapes and
never appear in training. Or, with `--eval_takes`, split by take: takes 0-4 of every speaker (FSDD's test split) make
the evaluation soundscapes, takes 5-49 the training ones, so evaluation hears new recordings of known speakers (this
is the split of the FSDD clip recipe, `recipes/fsdd.json`). Validation soundscapes (`--num_validation`, for choosing
the event threshold after training, as DESED's synthetic validation set) mix the training recordings anew: new
onsets, levels and backgrounds, no held-out voice, so the evaluation stays unseen. Soundscape i of a split depends
only on (seed, split, i), so the same seed writes byte-identical files, and more soundscapes extend a set without
changing the first ones.
Output layout:

    OUT/SPLIT/audio/SPLIT_NNNNN.wav   16-bit PCM; SPLIT is train, eval or validation
    OUT/SPLIT/strong.tsv       DCASE strong labels: filename onset offset event_label (s, 3 decimals); a soundscape
                               without digits is a row with only its filename, as DCASE lists one
    OUT/SPLIT/weak.tsv         DCASE weak labels: filename event_labels (comma-separated, in onset order)
    OUT/SPLIT/durations.tsv    filename duration

Usage: `python examples/soundscapes.py --fsdd_dir ../shared/data/fsdd/recordings --output_dir OUT --num_train 2000
--num_eval 500 [--num_validation 200] [--seed 0] [--eval_speakers theo yweweler | --eval_takes]`. A split's folder
is replaced as a whole (atomically).
"""

from __future__ import annotations

import argparse
import functools
import re
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
import soundfile

from modeling_ast.audio_io import load_audio
from modeling_ast.conversion.io import atomic_output_dir
from modeling_ast.training.sed_metrics import Event, write_events_tsv
from synthetic_sounds import CLASSES, EVENT_SECONDS, synthesize_event  # examples/ is on sys.path when run as a script

SAMPLING_RATE = 16000
SOUNDSCAPE_SECONDS = 10
DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
DEFAULT_EVAL_SPEAKERS = ("theo", "yweweler")
EVAL_TAKES = range(5)  # FSDD's test split
SPLITS = ("train", "eval", "validation")  # the index is part of every soundscape's seed
MAX_DIGITS = 4
MAX_DISTRACTORS = 2
SNR_DB = (6.0, 30.0)  # digits and distractors, re the background noise's RMS
NOISE_RMS_DB = -50.0  # re full scale
NOISE_EXPONENTS = {"white": 0.0, "pink": 1.0, "brown": 2.0}  # power spectrum 1/f^exponent
NOISE_LOW_HZ = 20.0
DISTRACTORS = tuple(label for label in CLASSES if label != "background")
TRIM_DB = 30.0  # an audible frame is within this of the recording's loudest
TRIM_FRAME = SAMPLING_RATE // 100  # 10 ms
ONSET_GRID = SAMPLING_RATE // 1000  # 1 ms, so the TSV's 3 decimals hold onsets exactly
PEAK = 0.99
RECORDING_NAME = re.compile(r"^(\d)_([^_]+)_(\d+)\.wav$")


class Soundscape(NamedTuple):
    """One soundscape's parts: the mixture is `foreground + background`, scaled down if it would clip."""

    foreground: np.ndarray  # the digits alone
    background: np.ndarray  # noise and distractors
    events: list[Event]  # the digits' (onset s, offset s, label), by onset


def split_recordings(fsdd_dir: Path, eval_speakers: Sequence[str] | None) -> dict[str, dict[int, list[Path]]]:
    """split -> digit -> its recordings (sorted by name): those of `eval_speakers` in "eval", the others in "train";
    with `eval_speakers` None, takes EVAL_TAKES of every speaker in "eval", the others in "train"."""
    recordings = [(path, RECORDING_NAME.match(path.name)) for path in sorted(Path(fsdd_dir).glob("*.wav"))]
    speakers = {match[2] for _, match in recordings if match}
    if eval_speakers is not None:
        if unknown := sorted(set(eval_speakers) - speakers):
            raise ValueError(f"no recordings of eval speaker(s) {unknown} in {fsdd_dir}; speakers: {sorted(speakers)}")
        if not speakers - set(eval_speakers):
            raise ValueError(f"every speaker of {fsdd_dir} is an eval speaker: none left for training")
    pools: dict[str, dict[int, list[Path]]] = {"train": {}, "eval": {}}
    for path, match in recordings:
        if match:
            held_out = int(match[3]) in EVAL_TAKES if eval_speakers is None else match[2] in eval_speakers
            pools["eval" if held_out else "train"].setdefault(int(match[1]), []).append(path)
    for split, pool in pools.items():
        if not pool:
            raise ValueError(f"no {split} recordings in {fsdd_dir} for this split (eval speakers {eval_speakers})")
    return pools


@functools.cache
def audible_part(path: Path) -> np.ndarray:
    """The recording at 16 kHz, from its first to its last 10 ms frame within TRIM_DB of its loudest frame."""
    waveform = load_audio(path, SAMPLING_RATE).numpy().astype(np.float64)
    frames = waveform[: waveform.size // TRIM_FRAME * TRIM_FRAME].reshape(-1, TRIM_FRAME)
    energy = (frames**2).mean(axis=1)
    audible = np.flatnonzero(energy >= energy.max() * 10 ** (-TRIM_DB / 10))
    return frames[audible[0] : audible[-1] + 1].ravel()


def coloured_noise(rng: np.random.Generator, exponent: float, num_samples: int) -> np.ndarray:
    """Gaussian noise at unit RMS whose power spectrum falls as 1/f^exponent from NOISE_LOW_HZ up (zero below)."""
    frequencies = np.fft.rfftfreq(num_samples, 1 / SAMPLING_RATE)
    # np.maximum keeps 0 Hz out of the power (np.where evaluates both branches).
    gain = np.where(frequencies >= NOISE_LOW_HZ, np.maximum(frequencies, NOISE_LOW_HZ) ** (-exponent / 2), 0.0)
    noise = np.fft.irfft(np.fft.rfft(rng.standard_normal(num_samples)) * gain, n=num_samples)
    return noise / _rms(noise)


def _rms(samples: np.ndarray) -> float:
    return float(np.sqrt(np.mean(samples**2)))


def _level(rng: np.random.Generator, sound: np.ndarray, noise_rms: float) -> np.ndarray:
    """`sound` scaled to a random SNR_DB above `noise_rms`."""
    return sound * noise_rms * 10 ** (rng.uniform(*SNR_DB) / 20) / _rms(sound)


def render_soundscape(rng: np.random.Generator, recordings: dict[int, list[Path]]) -> Soundscape:
    """One soundscape drawn with `rng` from `recordings` (digit -> paths), as the module docstring describes."""
    num_samples = SOUNDSCAPE_SECONDS * SAMPLING_RATE
    noise_rms = 10 ** (NOISE_RMS_DB / 20)
    exponent = list(NOISE_EXPONENTS.values())[rng.integers(len(NOISE_EXPONENTS))]
    background = noise_rms * coloured_noise(rng, exponent, num_samples)
    for _ in range(rng.integers(MAX_DISTRACTORS + 1)):
        label = DISTRACTORS[rng.integers(len(DISTRACTORS))]
        sound = synthesize_event(label, rng, int(rng.uniform(*EVENT_SECONDS) * SAMPLING_RATE))
        start = int(rng.integers(num_samples - sound.size + 1))
        background[start : start + sound.size] += _level(rng, sound, noise_rms)

    foreground = np.zeros(num_samples)
    events = []
    available = sorted(recordings)
    for digit in rng.choice(available, size=min(rng.integers(MAX_DIGITS + 1), len(available)), replace=False):
        candidates = recordings[digit]
        sound = audible_part(candidates[rng.integers(len(candidates))])
        start = int(rng.integers((num_samples - sound.size) // ONSET_GRID + 1)) * ONSET_GRID
        foreground[start : start + sound.size] += _level(rng, sound, noise_rms)
        events.append((start / SAMPLING_RATE, (start + sound.size) / SAMPLING_RATE, DIGITS[digit]))
    return Soundscape(foreground, background, sorted(events))


def mix(soundscape: Soundscape) -> np.ndarray:
    """The float32 mixture of a soundscape's parts, scaled down as a whole if its peak would exceed PEAK."""
    mixture = soundscape.foreground + soundscape.background
    return (mixture * min(1.0, PEAK / np.abs(mixture).max())).astype(np.float32)


def soundscape_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """The generator of soundscape `index` of `split`: it depends on nothing else, so sets extend without changing."""
    return np.random.default_rng([seed, SPLITS.index(split), index])


def _write_tsv(path: Path, header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    path.write_text("".join("\t".join(row) + "\n" for row in [header, *rows]), encoding="utf-8")


def _write_split(folder: Path, split: str, recordings: dict[int, list[Path]], count: int, seed: int) -> None:
    with atomic_output_dir(folder, overwrite=True) as staging:
        (staging / "audio").mkdir()
        events: dict[str, list[Event]] = {}
        for index in range(count):
            name = f"{split}_{index:05d}.wav"
            soundscape = render_soundscape(soundscape_rng(seed, split, index), recordings)
            soundfile.write(staging / "audio" / name, mix(soundscape), SAMPLING_RATE, subtype="PCM_16")
            events[name] = soundscape.events
        write_events_tsv(events, staging / "strong.tsv")
        weak = [(name, ",".join(label for _, _, label in clip_events)) for name, clip_events in events.items()]
        _write_tsv(staging / "weak.tsv", ("filename", "event_labels"), weak)
        durations = [(name, f"{SOUNDSCAPE_SECONDS:.3f}") for name in events]
        _write_tsv(staging / "durations.tsv", ("filename", "duration"), durations)


def make_soundscapes(
    fsdd_dir: Path,
    output_dir: Path,
    num_train: int,
    num_eval: int,
    seed: int = 0,
    eval_speakers: Sequence[str] | None = DEFAULT_EVAL_SPEAKERS,
    num_validation: int = 0,
) -> dict[str, Path]:
    """Writes `num_train` training, `num_eval` evaluation and `num_validation` validation soundscapes (from the
    training recordings; none: no folder) under `output_dir` (layout in the module docstring) from the FSDD
    recordings in `fsdd_dir`, split by speaker (`eval_speakers`) or, with None, by take (`split_recordings`);
    returns split -> its folder."""
    counts = {"train": num_train, "eval": num_eval, "validation": num_validation}
    for name, value in (*((f"num_{split}", count) for split, count in counts.items()), ("seed", seed)):
        if not isinstance(value, int) or value < 0:
            raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
    pools = split_recordings(Path(fsdd_dir), eval_speakers)
    pools["validation"] = pools["train"]
    folders = {split: Path(output_dir) / split for split in SPLITS if split != "validation" or num_validation}
    for split, folder in folders.items():
        _write_split(folder, split, pools[split], counts[split], seed)
    return folders


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fsdd_dir", type=Path, required=True, help="folder of {digit}_{speaker}_{take}.wav files")
    parser.add_argument("--output_dir", type=Path, required=True, help="writes train/, eval/ and validation/ here")
    parser.add_argument("--num_train", type=int, default=2000, help="training soundscapes (default 2000)")
    parser.add_argument("--num_eval", type=int, default=500, help="evaluation soundscapes (default 500)")
    parser.add_argument("--num_validation", type=int, default=200,
                        help="validation soundscapes of the training recordings (default 200)")
    parser.add_argument("--seed", type=int, default=0, help="random seed; the same seed writes identical files")
    held_out = parser.add_mutually_exclusive_group()
    held_out.add_argument(
        "--eval_speakers", nargs="+", default=list(DEFAULT_EVAL_SPEAKERS),
        help=f"speakers kept out of training (default {' '.join(DEFAULT_EVAL_SPEAKERS)})",
    )
    held_out.add_argument(
        "--eval_takes", action="store_true",
        help="split by take instead: takes 0-4 of every speaker for evaluation, 5-49 for training",
    )
    args = parser.parse_args(argv)
    eval_speakers = None if args.eval_takes else args.eval_speakers
    folders = make_soundscapes(args.fsdd_dir, args.output_dir, args.num_train, args.num_eval, args.seed, eval_speakers,
                               args.num_validation)  # fmt: skip
    for split, folder in folders.items():
        print(f"{split}: {getattr(args, f'num_{split}')} soundscapes in {folder}")


if __name__ == "__main__":
    main()
