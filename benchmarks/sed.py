"""Sound event detection on long recordings: speed (times real time) and peak memory of
`pipeline("sound-event-detection")` on this CPU.

    python benchmarks/sed.py                              # 10 min and 2 min recordings, 2 threads
    python benchmarks/sed.py --minutes 10 2 --threads 1 --output /tmp/sed.md

Model: the SED recipe's architecture (`examples/recipes/fsdd_sed.json`: width 128, 2 blocks, 4 heads, MLP 256,
1000 frames, strides 16 x 10), 10 labels, random weights (speed does not depend on them), saved with a feature
extractor that returns attention masks, as the training script saves it. Recording: speech-like audio
(`run.speech_like`, one minute at a time) in a 16 kHz 16-bit WAV, given to the pipeline as a path, so it is read
window by window (`audio_io.AudioFile`); windows of the model's 1000 frames without overlap, the pipeline's default.

Each recording runs in a fresh child process, which loads the pipeline, runs it once on the whole file and reports
the wall time of that call (reading, features, model, merging, events) and its peak resident memory (VmHWM, which
includes the libraries and the model: compare lengths, not absolute values). "x real time" is seconds of audio per
second of wall time; the issue's target is >= 50 on the 2-core machine. Peak memory should not grow with the length
of the recording. The load average before and after the run goes into the table's header: on a shared machine the
times are upper bounds.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import soundfile
import torch
from run import machine_description, speech_like, write_rows

from modeling_ast import ASTConfig, ASTFeatureExtractor, ASTForAudioFrameClassification

RATE = 16000
REPOSITORY = Path(__file__).resolve().parents[1]
RECIPE = REPOSITORY / "examples" / "recipes" / "fsdd_sed.json"
ARCHITECTURE_FIELDS = ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "max_length",
                       "frequency_stride", "time_stride")  # fmt: skip
TINY = {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 64,
        "max_length": 1000, "frequency_stride": 16, "time_stride": 10}  # fmt: skip
COLUMNS = ("recording", "wall (s)", "x real time", "RSS before the call (MiB)", "peak RSS (MiB)", "events")

_CHILD = r"""
import json, sys, time, torch, transformers, modeling_ast
model_dir, path, threads = sys.argv[1], sys.argv[2], int(sys.argv[3])
torch.set_num_threads(threads)
detector = transformers.pipeline("sound-event-detection", model=model_dir)
def kib(field):  # /proc/self/status, not getrusage: ru_maxrss survives exec and would report the parent's peak
    return int(next(line.split()[1] for line in open("/proc/self/status") if line.startswith(field)))
before = kib("VmRSS")
start = time.perf_counter()
events = detector(path)
wall = time.perf_counter() - start
print(json.dumps({"wall_s": wall, "rss_before_kib": before, "peak_kib": kib("VmHWM"), "events": len(events)}))
"""


def sed_config(tiny: bool) -> ASTConfig:
    """The recipe's architecture (or `TINY`, which checks the code and measures nothing), 10 labels."""
    sizes = TINY if tiny else {name: json.loads(RECIPE.read_text())[name] for name in ARCHITECTURE_FIELDS}
    return ASTConfig(num_labels=10, **sizes)


def save_model(directory: Path, tiny: bool) -> None:
    """A random-weight frame model of `sed_config` and its masking feature extractor, saved in `directory`."""
    torch.manual_seed(0)
    model = ASTForAudioFrameClassification(sed_config(tiny))
    model.save_pretrained(directory)
    ASTFeatureExtractor(max_length=model.config.max_length, return_attention_mask=True).save_pretrained(directory)


def write_recording(path: Path, minutes: float) -> int:
    """`minutes` of speech-like 16 kHz audio written to a 16-bit WAV at `path`, a minute at a time; its samples."""
    samples = round(minutes * 60 * RATE)
    with soundfile.SoundFile(path, "w", samplerate=RATE, channels=1, subtype="PCM_16") as handle:
        for index, start in enumerate(range(0, samples, 60 * RATE)):
            handle.write(speech_like(1, min(60 * RATE, samples - start) / RATE, seed=index)[0])
    return samples


def run_child(model_dir: Path, path: Path, threads: int) -> dict:
    """The child's figures for one recording, measured in a fresh process on this checkout's code."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPOSITORY), os.environ.get("PYTHONPATH")]))}  # fmt: skip
    result = subprocess.run([sys.executable, "-c", _CHILD, str(model_dir), str(path), str(threads)], env=env,
                            capture_output=True, text=True, check=False)  # fmt: skip
    if result.returncode:  # its stderr says why; CalledProcessError would not show it
        raise RuntimeError(f"the child process measuring {path.name} failed:\n{result.stderr}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def measure(minutes: float, work: Path, model_dir: Path, threads: int) -> tuple:
    """One table row: the recording, wall seconds, x real time, RSS before the call and peak (MiB), events found."""
    path = work / f"{minutes:g}min.wav"
    samples = write_recording(path, minutes)
    figures = run_child(model_dir, path, threads)
    path.unlink()
    return (f"{minutes:g} min, 16 kHz WAV", figures["wall_s"], samples / RATE / figures["wall_s"],
            figures["rss_before_kib"] / 1024, figures["peak_kib"] / 1024, figures["events"])  # fmt: skip


def load_average() -> str:
    return " / ".join(f"{value:.2f}" for value in os.getloadavg())


def main(argv: list[str] | None = None) -> list[tuple]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", nargs="+", type=float, default=[10.0, 2.0], help="recording lengths")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--tiny", action="store_true", help="a one-block model: checks the code, measures nothing")
    parser.add_argument("--output", type=Path, default=None, help="also write the table (and .json) here")
    args = parser.parse_args(argv)
    load_before = load_average()
    with tempfile.TemporaryDirectory() as work:
        save_model(Path(work) / "model", args.tiny)
        rows = []
        for minutes in args.minutes:
            print(f"{minutes:g} min ...", flush=True)
            rows.append(measure(minutes, Path(work), Path(work) / "model", args.threads))
    model = "tiny model" if args.tiny else f"SED recipe's model ({RECIPE.name})"
    header = (f"{machine_description(args.threads)}; pipeline('sound-event-detection') on a WAV path, {model}; load "
              f"average (1 / 5 / 15 min) {load_before} before, {load_average()} after")  # fmt: skip
    write_rows(header, COLUMNS, rows, args.output, digits=1)
    return rows


if __name__ == "__main__":
    main()
