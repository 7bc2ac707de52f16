"""`ast-listen MODEL [SOURCE]`: tag live audio with `streaming.StreamingTagger`, one JSON line per window or event.

    ffmpeg -i URL -f s16le -ac 1 -ar 16000 - | ast-listen outputs/fsdd -      # raw s16le mono PCM on stdin
    ast-listen outputs/fsdd recording.flac --realtime                          # a file paced at real time
    ast-listen outputs/fsdd                                                    # the default microphone

Sources (each an iterator of sample chunks): `pcm_chunks` (s16le mono bytes as they arrive), `file_chunks` (a file
read through `audio_io.AudioFile` at the model's rate, optionally paced at real time) and `microphone_chunks`
(`sounddevice`, an optional dependency over the system's PortAudio).

`run_stream` does the work in three threads, so that a slow model never stalls reading: a reader takes chunks
from the source, the calling thread computes features and cuts windows (cheap), and a worker runs the model and
writes the lines. Windows wait for the worker in a bounded queue; when it is full, `on_overload` decides, and
either way nothing is lost silently: "queue" waits for room (the reader then falls behind the source, and every
line's `lag_s`, seconds from the arrival of the window's last sample to its result, shows by how much), "skip"
drops the window and counts it (`skipped` in every line and in the last one). Setting `stop` (SIGINT in the
command) ends the stream: the chunks already read are tagged, the last window is flushed, and the command exits 0.
"""

from __future__ import annotations

import argparse
import json
import queue
import signal
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch

from .audio_io import AudioFile
from .configuration_ast import ASTConfig
from .conversion.common import run_cli
from .events import model_event_options
from .fbank import num_samples_for_frames
from .feature_extraction_ast import ASTFeatureExtractor
from .modeling_ast import ASTForAudioClassification
from .modeling_ast_frames import ASTForAudioFrameClassification
from .streaming import StreamingTagger, Window

__all__ = ["file_chunks", "main", "microphone_chunks", "pcm_chunks", "run_stream"]

ON_OVERLOAD = ("queue", "skip")
_END = object()  # closes a queue


def pcm_chunks(stream: BinaryIO, block_samples: int) -> Iterator[np.ndarray]:
    """int16 samples of raw s16le mono PCM as they arrive: each read returns what the pipe holds, up to a block
    (`read1`), so a slow producer is not waited for. A half sample left at the end is reported, not guessed."""
    read = getattr(stream, "read1", stream.read)
    leftover = b""
    while data := read(2 * block_samples):
        data = leftover + data
        whole = len(data) - len(data) % 2
        leftover = data[whole:]
        if whole:
            yield np.frombuffer(data[:whole], dtype="<i2")
    if leftover:
        warnings.warn("the PCM stream ended with half a sample (an odd number of bytes); is it s16le?", stacklevel=2)


def file_chunks(path: str | Path, sampling_rate: int, block_s: float, realtime: bool) -> Iterator[np.ndarray]:
    """Blocks of `block_s` seconds of an audio file at `sampling_rate` (`audio_io.AudioFile`: mono, resampled,
    read block by block). With `realtime`, each block is released when its last sample would have been recorded."""
    audio = AudioFile(path, sampling_rate)
    block = max(1, round(block_s * sampling_rate))
    started = time.monotonic()
    for start in range(0, audio.num_samples, block):
        end = min(start + block, audio.num_samples)
        if realtime:
            time.sleep(max(0.0, started + end / sampling_rate - time.monotonic()))
        yield audio.read(start, end).numpy()


def microphone_chunks(
    sampling_rate: int | None, block_s: float, device: str | int | None = None
) -> tuple[Iterator[np.ndarray], int]:
    """(blocks of `block_s` seconds from an input device, mono float32; their rate): the system's default device
    unless `device` names one, at `sampling_rate` or else the device's own rate (the tagger resamples). Needs
    `sounddevice` and PortAudio (a ValueError says how to install them). Input the reader could not take in time
    (PortAudio overflow) is reported as a warning, since that audio is lost."""
    try:
        import sounddevice
    except (ImportError, OSError) as err:  # OSError: the package is there but PortAudio is not
        raise ValueError(
            "the microphone source needs the sounddevice package and the PortAudio library: pip install "
            f"'modeling_ast[listen]' and, on Debian/Ubuntu, sudo apt-get install libportaudio2 ({err})"
        ) from err
    rate = sampling_rate or int(sounddevice.query_devices(device, "input")["default_samplerate"])
    block = max(1, round(block_s * rate))

    def blocks() -> Iterator[np.ndarray]:
        with sounddevice.InputStream(samplerate=rate, channels=1, dtype="float32", blocksize=block,
                                     device=device) as microphone:  # fmt: skip
            while True:
                data, overflowed = microphone.read(block)
                if overflowed:
                    warnings.warn("microphone input overflowed: audio was lost before it could be read", stacklevel=2)
                yield data[:, 0].copy()

    return blocks(), rate


@dataclass
class _Counters:
    windows: int = 0  # windows run through the model
    skipped: int = 0  # windows dropped under overload ("skip")


def run_stream(
    tagger: StreamingTagger,
    source: Iterable[np.ndarray],
    emit: Callable[[dict[str, Any]], None],
    on_overload: str = "queue",
    queue_size: int = 4,
    stop: threading.Event | None = None,
) -> dict[str, Any]:
    """Tag `source` (chunks of samples at the tagger's input rate) until it ends or `stop` is set; `emit` gets one
    line (a dict) per window result or event, then a last `{"type": "end", ...}` line, which is also returned.

    Lines carry the result (stream seconds), `wall_time` (Unix time), `lag_s`, `queued` (windows waiting) and
    `skipped` (see the module docstring). Errors of the source or the model are raised here after the threads stop.
    """
    if on_overload not in ON_OVERLOAD:
        raise ValueError(f"on_overload must be one of {ON_OVERLOAD}, got {on_overload!r}")
    if isinstance(queue_size, bool) or not isinstance(queue_size, int) or queue_size < 1:
        raise ValueError(f"queue_size must be a positive integer, got {queue_size!r}")
    stop = stop or threading.Event()
    chunks: queue.Queue = queue.Queue(maxsize=64)
    windows: queue.Queue = queue.Queue(maxsize=queue_size)
    counters, errors = _Counters(), []
    threading.Thread(target=_read, args=(source, chunks), daemon=True, name="ast-listen reader").start()
    # a daemon, so that a second Ctrl-C can end the process while it runs
    worker = threading.Thread(target=_work, args=(tagger, windows, emit, counters, errors, stop),
                              name="ast-listen model", daemon=True)  # fmt: skip
    worker.start()
    last_arrival = time.monotonic()
    try:
        for samples, last_arrival in _chunks_until_stopped(chunks, stop, errors):
            for window in tagger.windows(samples):
                _offer(windows, (window, last_arrival), on_overload, counters)
        for window in tagger.final_windows():
            windows.put((window, last_arrival))  # the end of the stream is never skipped
    finally:
        windows.put(_END)
        worker.join()
    if errors:
        raise errors[0]
    for event in tagger.finish():
        emit(_line("event", event, last_arrival, windows, counters))
    end = {"type": "end", "duration_s": tagger.features.num_samples / tagger.features.sampling_rate,
           "windows": counters.windows, "skipped": counters.skipped, "wall_time": time.time()}  # fmt: skip
    emit(end)
    return end


def _read(source: Iterable[np.ndarray], chunks: queue.Queue) -> None:
    """Reader thread: (samples, arrival time) per chunk, then `_END`; an error of the source goes in its place."""
    try:
        for samples in source:
            chunks.put((samples, time.monotonic()))
    except BaseException as err:  # noqa: BLE001  (handed to the calling thread, which raises it)
        chunks.put(err)
        return
    chunks.put(_END)


def _chunks_until_stopped(
    chunks: queue.Queue, stop: threading.Event, errors: list[BaseException]
) -> Iterator[tuple[np.ndarray, float]]:
    """The reader's chunks until the source ends, or until `stop` is set; then the chunks already read."""
    while not stop.is_set():
        try:
            item = chunks.get(timeout=0.05)
        except queue.Empty:
            continue
        if not _usable(item, errors):
            return
        yield item
    for _ in range(chunks.qsize()):  # a source faster than the features would otherwise never let go
        item = chunks.get_nowait()
        if not _usable(item, errors):
            return
        yield item


def _usable(item: object, errors: list[BaseException]) -> bool:
    """Whether a reader's item is a chunk (not the end, nor an error, which goes to `errors`)."""
    if isinstance(item, BaseException):
        errors.append(item)
    return item is not _END and not isinstance(item, BaseException)


def _offer(windows: queue.Queue, item: tuple[Window, float], on_overload: str, counters: _Counters) -> None:
    if on_overload == "queue":
        windows.put(item)
        return
    try:
        windows.put_nowait(item)
    except queue.Full:
        counters.skipped += 1


def _work(
    tagger: StreamingTagger,
    windows: queue.Queue,
    emit: Callable[[dict[str, Any]], None],
    counters: _Counters,
    errors: list[BaseException],
    stop: threading.Event,
) -> None:
    """Model thread: score windows in order and emit their lines until `_END`; after an error, only drain."""
    while (item := windows.get()) is not _END:
        if errors:
            continue
        window, arrival = item
        try:
            results = tagger.score(window)
            counters.windows += 1
            kind = "event" if tagger.is_frame_model else "window"
            for result in results:
                emit(_line(kind, result, arrival, windows, counters))
        except BaseException as err:  # noqa: BLE001  (raised by run_stream once the threads have stopped)
            errors.append(err)
            stop.set()


def _line(kind: str, result: dict[str, Any], arrival: float, windows: queue.Queue, counters: _Counters) -> dict:
    return {"type": kind, **result, "wall_time": time.time(), "lag_s": time.monotonic() - arrival,
            "queued": windows.qsize(), "skipped": counters.skipped}  # fmt: skip


class JsonLines:
    """Writes each line to stdout and, with `path`, appends it to that file, flushed line by line."""

    def __init__(self, path: str | Path | None) -> None:
        self.file = None if path is None else open(path, "a", encoding="utf-8")  # noqa: SIM115  (closed by close())

    def __call__(self, line: dict[str, Any]) -> None:
        text = json.dumps(line, ensure_ascii=False)
        print(text, flush=True)
        if self.file is not None:
            self.file.write(text + "\n")
            self.file.flush()

    def close(self) -> None:
        if self.file is not None:
            self.file.close()


DESCRIPTION = """\
Tag live audio: one JSON line per window (clip classifiers) or per event (frame models), with stream time
(start/end, seconds since the stream began) and wall-clock time (wall_time, Unix seconds).

    ffmpeg -i URL -f s16le -ac 1 -ar 16000 - | ast-listen outputs/fsdd -
    ast-listen outputs/fsdd recording.flac --realtime --window_s 2 --hop_s 0.5 --output tags.jsonl
    ast-listen outputs/fsdd                       # the microphone (pip install "modeling_ast[listen]")

Results equal the offline pipelines' over the same windows. When the model cannot keep up, --on_overload queue waits
(lag_s in each line grows) and --on_overload skip drops windows (counted in skipped). Ctrl-C tags what was read,
flushes the last window, prints a final {"type": "end"} line and exits 0.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ast-listen", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("model", help="checkpoint directory or Hub id (audio classifier or frame model)")
    parser.add_argument("source", nargs="?", default=None,
                        help="- for raw s16le mono PCM on stdin, an audio file, or nothing for the microphone")
    parser.add_argument("--window_s", type=float, default=None, help="seconds per window (default: the model's input)")
    parser.add_argument("--hop_s", type=float, default=1.0, help="seconds between results (default 1.0)")
    parser.add_argument("--rate", type=int, default=None,
                        help="sampling rate of stdin PCM (default 16000) or of the microphone (default: its own)")
    parser.add_argument("--block_s", type=float, default=0.1, help="seconds per block read from a file or microphone")
    parser.add_argument("--realtime", action="store_true", help="pace a file at real time")
    parser.add_argument("--microphone_device", default=None, help="sounddevice input device (name or index)")
    parser.add_argument("--top_k", type=int, default=5, help="labels per window (clip classifiers)")
    parser.add_argument("--threshold", type=float, default=None,
                        help="labels scoring at least this (clip classifiers); event threshold (frame models; "
                             "default the model's, else 0.5)")
    parser.add_argument("--low", type=float, default=None, help="frame models: an event ends below this")
    parser.add_argument("--median_window", type=int, default=None,
                        help="frame models: median filter, in columns (default the model's, else 1)")
    parser.add_argument("--max_event_s", type=float, default=None, help="frame models: report events at this length")
    parser.add_argument("--output", default=None, help="also append the lines to this JSONL file")
    parser.add_argument("--on_overload", choices=ON_OVERLOAD, default="queue",
                        help="queue: wait, lag reported; skip: drop windows, counted (default queue)")
    parser.add_argument("--queue_size", type=int, default=4, help="windows that may wait for the model (default 4)")
    parser.add_argument("--device", default="cpu", help="e.g. cpu or cuda:0 (default cpu)")
    parser.add_argument("--onnx", nargs="?", const="", default=None, metavar="FILE",
                        help="run an exported ONNX classifier (onnxruntime, CPU); without FILE, MODEL/model.int8.onnx")
    return parser


def load_model(model: str, onnx: str | None, device: str) -> tuple[torch.nn.Module, ASTFeatureExtractor]:
    """The checkpoint's model (frame model or classifier, from its config's architectures, or its ONNX file) and
    feature extractor."""
    extractor = ASTFeatureExtractor.from_pretrained(model)
    if onnx is not None:
        from .onnx_inference import ASTOnnxForAudioClassification

        return ASTOnnxForAudioClassification.from_pretrained(model, onnx or None), extractor
    architectures = ASTConfig.from_pretrained(model).architectures or []
    frames = ASTForAudioFrameClassification.__name__ in architectures
    model_class = ASTForAudioFrameClassification if frames else ASTForAudioClassification
    return model_class.from_pretrained(model).to(device), extractor


def _source(args: argparse.Namespace, model_rate: int) -> tuple[Iterable[np.ndarray], int]:
    """(chunks, their rate) for the command's SOURCE."""
    if args.source == "-":
        rate = args.rate or 16000
        return pcm_chunks(sys.stdin.buffer, max(1, round(args.block_s * rate))), rate
    if args.source is not None:
        return file_chunks(args.source, model_rate, args.block_s, args.realtime), model_rate
    return microphone_chunks(args.rate, args.block_s, args.microphone_device)


def _listen(args: argparse.Namespace, stop: threading.Event) -> str:
    model, extractor = load_model(args.model, args.onnx, args.device)
    rate = extractor.sampling_rate
    window_s = args.window_s or num_samples_for_frames(extractor.max_length, rate) / rate
    source, source_rate = _source(args, rate)
    given = {"threshold": args.threshold, "low": args.low, "median_window": args.median_window}
    events = model_event_options(model.config, given)
    tagger = StreamingTagger(model, window_s, min(args.hop_s, window_s), sampling_rate=source_rate,
                             feature_extractor=extractor, top_k=args.top_k, threshold=args.threshold, events=events,
                             max_event_s=args.max_event_s)  # fmt: skip
    writer = JsonLines(args.output)
    try:
        end = run_stream(tagger, source, writer, args.on_overload, args.queue_size, stop)
    finally:
        writer.close()
    return f"tagged {end['duration_s']:.2f} s of audio: {end['windows']} windows, {end['skipped']} skipped"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    stop = threading.Event()

    def interrupt(signum: int, frame: object) -> None:
        if stop.is_set():  # a second Ctrl-C: stop flushing too
            raise KeyboardInterrupt
        stop.set()

    signal.signal(signal.SIGINT, interrupt)
    return run_cli(lambda: _listen(args, stop), message_to_stderr=True)


if __name__ == "__main__":
    sys.exit(main())
