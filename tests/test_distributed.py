"""examples/run_audio_classification.py under `torchrun` and `accelerate launch`: two CPU processes (gloo) train one
model.

The script runs unchanged; a small wrapper calls its `main` on every rank and writes a hash of the rank's final weights.
Both ranks must end with identical weights (DDP keeps them in step, weight averaging and evaluation included), and each
rank must have trained on its half of every epoch (half the optimiser steps of a single process).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from conftest import EXAMPLES_DIR, import_example


WRAPPER = """
import hashlib, json, os, sys
from pathlib import Path

import torch.distributed as dist

from modeling_ast.training.trainer import end_processes

sys.path.insert(0, {examples!r})
import run_audio_classification

result = run_audio_classification.main(sys.argv[1:])
digest = hashlib.sha256()
for key, value in sorted(result["model"].state_dict().items()):
    digest.update(key.encode())
    digest.update(value.detach().cpu().contiguous().numpy().tobytes())
steps = max(entry["step"] for entry in result["log_history"])
record = {{
    "world_size": dist.get_world_size(),
    "digest": digest.hexdigest(),
    "steps": steps,
    "metrics": result["results"],
    "num_eval_clips": result["num_eval_clips"],
}}
Path(sys.argv[sys.argv.index("--output_dir") + 1], f"rank{{os.environ['RANK']}}.json").write_text(json.dumps(record))
end_processes()
"""


LAUNCHERS = {
    "torchrun": [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"],
    # `--multi_gpu` picks accelerate's torchrun launcher; on a machine without GPUs the script then trains on CPUs.
    "accelerate": [
        sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
        "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
    ],
}  # fmt: skip


@pytest.mark.parametrize("launcher", sorted(LAUNCHERS))
def test_two_cpu_processes_end_with_identical_weights(tmp_path, launcher):
    generate_dataset = import_example("synthetic_sounds").generate_dataset
    train, evaluation = generate_dataset(tmp_path / "data", train_per_class=2, eval_per_class=1, seed=1)  # 16 / 8 clips
    wrapper = tmp_path / "train_and_hash.py"
    wrapper.write_text(WRAPPER.format(examples=str(EXAMPLES_DIR)))
    output_dir = tmp_path / "out"
    args = [
        "--train_file", str(train), "--eval_file", str(evaluation), "--output_dir", str(output_dir),
        "--hidden_size", "32", "--num_hidden_layers", "1", "--num_attention_heads", "2", "--intermediate_size", "64",
        "--max_length", "64", "--per_device_train_batch_size", "4", "--num_train_epochs", "2",
        "--mixup", "0.5", "--freqm", "8", "--timem", "8", "--balanced_sampling", "true", "--patchout_random", "0.2",
        "--lr_decay_start_epoch", "1", "--weight_averaging_start_epoch", "1", "--weight_averaging_end_epoch", "2",
        "--report_to", "none", "--disable_tqdm", "true", "--logging_steps", "1",
    ]  # fmt: skip
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    command = LAUNCHERS[launcher] + [str(wrapper)]
    completed = subprocess.run(
        command + args, env=environment, capture_output=True, text=True, timeout=170, cwd=tmp_path
    )
    assert completed.returncode == 0, completed.stderr[-4000:]

    ranks = [json.loads((output_dir / f"rank{rank}.json").read_text()) for rank in (0, 1)]
    assert [record["world_size"] for record in ranks] == [2, 2]
    assert ranks[0]["digest"] == ranks[1]["digest"]
    # 16 clips, 4 per process and step, 2 processes: 2 steps per epoch, 4 in all (a single process would take 8).
    assert [record["steps"] for record in ranks] == [4, 4]
    assert set(ranks[0]["metrics"]) == {"weight-averaged", "last epoch"} and ranks[0]["num_eval_clips"] == 8
    for model, metrics in ranks[0]["metrics"].items():
        for name in ("eval_loss", "eval_accuracy", "eval_top5_accuracy"):
            assert metrics[name] == ranks[1]["metrics"][model][name], (model, name)
    assert (output_dir / "model.safetensors").is_file() and (output_dir / "README.md").is_file()
