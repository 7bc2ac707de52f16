"""A demo page for any audio-classification checkpoint: upload or record a clip, see its top labels and, for audio
longer than the model's input, the timeline of labels over time (the picture `ast-tag --plot` draws); or tag the
microphone live (the "Live microphone" tab, driven by `modeling_ast.streaming.StreamingTagger`). A frame-level
checkpoint (`ASTForAudioFrameClassification`, sound event detection) gets a "Detect events" tab instead: the events of
`pipeline("sound-event-detection")` with the model's own event settings, as a table and a timeline; live, each event
once it has ended.

    pip install "modeling_ast[demo]"
    python examples/demo_app.py outputs/fsdd                      # a checkpoint folder ...
    python examples/demo_app.py MIT/ast-finetuned-audioset-10-10-0.4593 --server_port 7861   # ... or a Hub id

Audio up to the model's input length (`max_length` frames of 10 ms) is classified as one clip; longer audio in
windows of that length (`--chunk_length_s` to choose), whose scores give the clip's labels (maximum over windows) and
the timeline. The page's function is also an HTTP API (`/classify`, or `/detect` for events; e.g. with
gradio_client).
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
from pathlib import Path
from typing import Any

import gradio as gr
from transformers import AutoConfig, pipeline

import modeling_ast  # noqa: F401  (registers model_type "ast" with the pipeline)
from modeling_ast import ASTForAudioFrameClassification
from modeling_ast.audio_io import load_audio
from modeling_ast.modeling_ast_frames import column_hop
from modeling_ast.streaming import StreamingTagger, stream_step
from modeling_ast.timeline import plot_timeline

FRAME_SHIFT_S = 0.01  # the feature extractor's Kaldi frames: one every 10 ms


def build_demo(model: str, top_k: int = 5, chunk_length_s: float | None = None, device: str | None = None) -> gr.Blocks:
    """The page for checkpoint `model` (a folder or Hub id): audio in; labels, and a timeline for long audio, out (for
    a frame-level checkpoint: events and their timeline)."""
    events = ASTForAudioFrameClassification.__name__ in (AutoConfig.from_pretrained(model).architectures or [])
    classifier = pipeline("sound-event-detection" if events else "audio-classification", model=model, device=device)
    window_s = chunk_length_s or classifier.feature_extractor.max_length * FRAME_SHIFT_S
    plots = Path(tempfile.mkdtemp(prefix="ast-demo-"))

    def read(audio_path: str | None) -> dict[str, Any]:
        """The upload through the loader the pipeline uses, once: an unreadable one is reported on the page."""
        if not audio_path:
            raise gr.Error("upload or record some audio first")
        rate = classifier.feature_extractor.sampling_rate
        try:
            return {"raw": load_audio(audio_path, rate), "sampling_rate": rate}
        except ValueError as err:
            raise gr.Error(f"cannot read {Path(audio_path).name}: {err}") from err

    def detect(audio_path: str | None) -> tuple[list[list[Any]], str]:
        audio = read(audio_path)
        try:
            found = classifier(audio, chunk_length_s=window_s)
        except ValueError as err:
            raise gr.Error(f"cannot detect events in {Path(audio_path).name}: {err}") from err
        record = {"input": Path(audio_path).name, "events": found}
        duration = len(audio["raw"]) / audio["sampling_rate"]
        timeline = plot_timeline(record, plots / f"{Path(audio_path).stem}.png", duration=duration)
        rows = [[event["label"], round(event["start"], 3), round(event["end"], 3), round(event["score"], 3)]
                for event in found]  # fmt: skip
        return rows, str(timeline)

    def classify(audio_path: str | None) -> tuple[dict[str, float], str | None]:
        audio = read(audio_path)
        rate = audio["sampling_rate"]
        try:
            if len(audio["raw"]) <= window_s * rate:
                return _label_scores(classifier(audio, top_k=top_k)), None
            result = classifier(audio, top_k=top_k, chunk_length_s=window_s, stride_length_s=window_s / 2,
                                return_timestamps=True)
        except ValueError as err:
            raise gr.Error(f"cannot classify {Path(audio_path).name}: {err}") from err
        record = {"input": Path(audio_path).name, "windows": result["windows"]}
        return _label_scores(result["labels"]), str(plot_timeline(record, plots / f"{Path(audio_path).stem}.png"))

    hop_s = live_hop_s(classifier, window_s)
    live_step = make_live_step(classifier, window_s, hop_s, top_k=top_k)
    with gr.Blocks(title="Audio Spectrogram Transformer") as demo:
        if events:
            gr.Markdown(f"**{model}**: sound events, in windows of {window_s:g} s whose frame scores are merged.")
            with gr.Tab("Detect events"):
                audio = gr.Audio(sources=["upload", "microphone"], type="filepath", label="audio")
                button = gr.Button("Detect", variant="primary")
                table = gr.Dataframe(headers=["label", "start (s)", "end (s)", "score"], label="events")
                timeline = gr.Image(type="filepath", label="timeline")
                button.click(detect, inputs=audio, outputs=[table, timeline], api_name="detect")
        else:
            gr.Markdown(f"**{model}**: clips up to {window_s:g} s as one; longer audio in {window_s:g} s windows.")
            with gr.Tab("Classify a recording"):
                audio = gr.Audio(sources=["upload", "microphone"], type="filepath", label="audio")
                button = gr.Button("Classify", variant="primary")
                labels = gr.Label(num_top_classes=top_k, label="top labels")
                timeline = gr.Image(type="filepath", label="timeline (long audio)")
                button.click(classify, inputs=audio, outputs=[labels, timeline], api_name="classify")
        with gr.Tab("Live microphone"):
            gr.Markdown(f"The last {window_s:g} s of the microphone, tagged every {hop_s:g} s "
                        "(`modeling_ast.streaming.StreamingTagger`: the same results as the offline windows"
                        f"{'; each event once it has ended' if events else ''}).")
            live = gr.Audio(sources=["microphone"], streaming=True, type="numpy", label="microphone")
            tagger, results = gr.State(None), gr.JSON(label="events" if events else "windows")
            live.stream(live_step, inputs=[tagger, live], outputs=[tagger, results], stream_every=0.5,
                        api_name="live")
            live.stop_recording(lambda state: live_step(state, None), inputs=tagger, outputs=[tagger, results])
    return demo


def live_hop_s(classifier: Any, window_s: float) -> float:
    """Seconds between the live tab's results: half the window, at most 1 s; for a frame model rounded down to whole
    columns (its windows start on the column grid), at least one."""
    hop_s = min(1.0, window_s / 2)
    if not isinstance(classifier.model, ASTForAudioFrameClassification):
        return hop_s
    column_s = column_hop(classifier.model.config, classifier.feature_extractor.sampling_rate)
    return max(1, math.floor(hop_s / column_s + 1e-9)) * column_s


def make_live_step(classifier: Any, window_s: float, hop_s: float, top_k: int) -> Any:
    """The live tab's stream handler: `(tagger state, (rate, samples) chunk or None) -> (state, window results)`,
    one `StreamingTagger` per recording, made on its first chunk and flushed when it stops."""

    def step(tagger: StreamingTagger | None, chunk: tuple[int, Any] | None) -> tuple[StreamingTagger | None, list]:
        make = lambda rate: StreamingTagger(classifier, window_s, hop_s, sampling_rate=rate, top_k=top_k)  # noqa: E731
        return stream_step(tagger, chunk, make)

    return step


def _label_scores(labels: list[dict[str, Any]]) -> dict[str, float]:
    return {item["label"]: float(item["score"]) for item in labels}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="checkpoint folder or Hub id of an audio-classification or frame-level model")
    parser.add_argument("--top_k", type=int, default=5, help="labels shown (default 5)")
    parser.add_argument(
        "--chunk_length_s", type=float, default=None, help="window of long audio (default: the model's input)"
    )
    parser.add_argument("--device", default=None, help="e.g. cpu or cuda:0 (default: cpu)")
    parser.add_argument("--server_name", default="127.0.0.1", help="address to listen on (0.0.0.0: every interface)")
    parser.add_argument("--server_port", type=int, default=7860)
    args = parser.parse_args(argv)
    demo = build_demo(args.model, args.top_k, args.chunk_length_s, args.device)
    demo.launch(server_name=args.server_name, server_port=args.server_port)


if __name__ == "__main__":
    main(sys.argv[1:])
