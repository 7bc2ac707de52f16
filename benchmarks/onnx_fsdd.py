"""ONNX export of a trained FSDD classifier: file sizes and test accuracy of PyTorch, ONNX fp32 and ONNX int8
(`ASTOnnxForAudioClassification`, the int8 path of the README).

    python examples/run_audio_classification.py examples/recipes/fsdd.json --output_dir outputs/fsdd
    python benchmarks/onnx_fsdd.py outputs/fsdd ../shared/data/fsdd/recordings

The test split is the conventional one (takes 0-4, 300 clips). Features come from the model's own saved feature
extractor, one clip at a time and unpadded (clips shorter than one patch are padded to it), so the three runtimes see
identical inputs and no attention mask is needed.
"""

from __future__ import annotations

import argparse
import re
import tempfile
from pathlib import Path

import torch

from modeling_ast import ASTFeatureExtractor, ASTForAudioClassification
from modeling_ast.fbank import num_frames
from modeling_ast.audio_io import load_audio
from modeling_ast.conversion.onnx import export_onnx
from modeling_ast.onnx_inference import ASTOnnxForAudioClassification

TEST_TAKE = re.compile(r"^(\d+)_[a-z]+_[0-4]\.wav$")


def test_clips(fsdd_dir: Path) -> list[tuple[Path, str]]:
    clips = [(path, TEST_TAKE.match(path.name).group(1)) for path in sorted(fsdd_dir.glob("*.wav"))
             if TEST_TAKE.match(path.name)]
    if not clips:
        raise ValueError(f"no FSDD test clips ({{digit}}_{{speaker}}_{{0-4}}.wav) in {fsdd_dir}")
    return clips


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model_dir", type=Path)
    parser.add_argument("fsdd_dir", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(2)
    model = ASTForAudioClassification.from_pretrained(args.model_dir).eval()
    extractor = ASTFeatureExtractor.from_pretrained(args.model_dir)
    clips = test_clips(args.fsdd_dir)
    label2id = {label: int(index) for label, index in model.config.label2id.items()}

    with tempfile.TemporaryDirectory() as work:
        path = export_onnx(model, Path(work) / "model.onnx", quantize_int8=True)
        files = {"onnx fp32": path, "onnx int8": path.with_suffix(".int8.onnx")}
        sizes = {name: file.stat().st_size for name, file in files.items()}
        runtimes = {"pytorch": model, **{name: ASTOnnxForAudioClassification(model.config, file, num_threads=2)
                                         for name, file in files.items()}}
        correct = dict.fromkeys(runtimes, 0)
        for clip, label in clips:
            waveform = load_audio(clip)
            frames = max(num_frames(len(waveform)), model.config.patch_size)  # clips under 175 ms: one padded patch
            features = extractor(waveform, sampling_rate=16000, padding="max_length", max_length=frames,
                                 return_attention_mask=False, return_tensors="pt")
            with torch.no_grad():
                for name, runtime in runtimes.items():
                    correct[name] += int(runtime(**features).logits.argmax()) == label2id[label]
    print(f"FSDD test clips: {len(clips)}; model {args.model_dir}")
    print("| runtime | file size (MiB) | test accuracy |\n|---|---|---|")
    for name, count in correct.items():
        size = f"{sizes[name] / 2**20:.2f}" if name in sizes else "-"
        print(f"| {name} | {size} | {count / len(clips):.4f} |")
    points = 100 * (correct["onnx int8"] - correct["pytorch"]) / len(clips)
    print(f"int8 - fp32 (PyTorch): {points:+.2f} points")


if __name__ == "__main__":
    main()
