"""A demo page for any audio-classification checkpoint: upload or record a clip, see its top labels and, for audio
longer than the model's input, the timeline of labels over time (the picture `ast-tag --plot` draws); or tag the
microphone live (the "Live microphone" tab, driven by `modeling_ast.streaming.StreamingTagger`).

    pip install "modeling_ast[demo]"
    python examples/demo_app.py outputs/fsdd                      # a checkpoint folder ...
    python examples/demo_app.py MIT/ast-finetuned-audioset-10-10-0.4593 --server_port 7861   # ... or a Hub id

Audio up to the model's input length (`max_length` frames of 10 ms) is classified as one clip; longer audio in
windows of that length (`--chunk_length_s` to choose), whose scores give the clip's labels (maximum over windows) and
the timeline. The page's function is also an HTTP API (`/classify`, e.g. with gradio_client).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

import gradio as gr
from transformers import pipeline

import modeling_ast  # noqa: F401  (registers model_type "ast" with the pipeline)
from modeling_ast.audio_io import load_audio
from modeling_ast.streaming import StreamingTagger, stream_step
from modeling_ast.timeline import plot_timeline

FRAME_SHIFT_S = 0.01  # the feature extractor's Kaldi frames: one every 10 ms


def build_demo(model: str, top_k: int = 5, chunk_length_s: float | None = None, device: str | None = None) -> gr.Blocks:
    """The page for checkpoint `model` (a folder or Hub id): audio in; labels, and a timeline for long audio, out."""
    classifier = pipeline("audio-classification", model=model, device=device)
    window_s = chunk_length_s or classifier.feature_extractor.max_length * FRAME_SHIFT_S
    plots = Path(tempfile.mkdtemp(prefix="ast-demo-"))

    def classify(audio_path: str | None) -> tuple[dict[str, float], str | None]:
        if not audio_path:
            raise gr.Error("upload or record some audio first")
        rate = classifier.feature_extractor.sampling_rate
        try:  # the loader the pipeline uses, once: an unreadable upload is reported on the page with its reason
            audio = {"raw": load_audio(audio_path, rate), "sampling_rate": rate}
            if len(audio["raw"]) <= window_s * rate:
                return _label_scores(classifier(audio, top_k=top_k)), None
            result = classifier(audio, top_k=top_k, chunk_length_s=window_s, stride_length_s=window_s / 2,
                                return_timestamps=True)
        except ValueError as err:
            raise gr.Error(f"cannot classify {Path(audio_path).name}: {err}") from err
        record = {"input": Path(audio_path).name, "windows": result["windows"]}
        return _label_scores(result["labels"]), str(plot_timeline(record, plots / f"{Path(audio_path).stem}.png"))

    live_step = make_live_step(classifier, window_s, hop_s=min(1.0, window_s / 2), top_k=top_k)
    with gr.Blocks(title="Audio Spectrogram Transformer") as demo:
        gr.Markdown(f"**{model}**: clips up to {window_s:g} s as one; longer audio in {window_s:g} s windows.")
        with gr.Tab("Classify a recording"):
            audio = gr.Audio(sources=["upload", "microphone"], type="filepath", label="audio")
            button = gr.Button("Classify", variant="primary")
            labels = gr.Label(num_top_classes=top_k, label="top labels")
            timeline = gr.Image(type="filepath", label="timeline (long audio)")
            button.click(classify, inputs=audio, outputs=[labels, timeline], api_name="classify")
        with gr.Tab("Live microphone"):
            gr.Markdown(f"The last {window_s:g} s of the microphone, tagged every {min(1.0, window_s / 2):g} s "
                        "(`modeling_ast.streaming.StreamingTagger`: the same results as the offline windows).")
            live = gr.Audio(sources=["microphone"], streaming=True, type="numpy", label="microphone")
            tagger, results = gr.State(None), gr.JSON(label="windows")
            live.stream(live_step, inputs=[tagger, live], outputs=[tagger, results], stream_every=0.5,
                        api_name="live")
            live.stop_recording(lambda state: live_step(state, None), inputs=tagger, outputs=[tagger, results])
    return demo


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
    parser.add_argument("model", help="checkpoint folder or Hub id of an audio-classification model")
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
