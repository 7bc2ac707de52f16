"""Output locks between real processes (modeling_ast.locking): a second writer is refused, naming the first, or waits
for it; the lock of a writer killed with SIGKILL is taken over; one holder at a time among racing processes. And the
commands that write apply it: the converters, ONNX export and the training script (ast-tag: test_tag_fingerprints)."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import import_example

import modeling_ast.locking
from tiny_models import save_tiny_digit_classifier
from modeling_ast.conversion import cli
from modeling_ast.locking import OutputLockedError, lock_path, output_lock


# Processes that import the lock module alone (it needs only the standard library): they start in milliseconds,
# where importing the package (torch, transformers) takes seconds.
IMPORT_LOCKING = (
    "import importlib.util, sys, time; "
    f"spec = importlib.util.spec_from_file_location('locking', {modeling_ast.locking.__file__!r}); "
    "locking = importlib.util.module_from_spec(spec); spec.loader.exec_module(locking)\n"
)
# Takes the lock of argv[1], says so, and holds it for argv[2] seconds.
HOLDER = IMPORT_LOCKING + """
with locking.output_lock(sys.argv[1]):
    print("locked", flush=True)
    time.sleep(float(sys.argv[2]))
"""
# Adds 1 to the number in argv[1] argv[2] times, each time under the lock of argv[1], slowly.
INCREMENTER = IMPORT_LOCKING + """
for _ in range(int(sys.argv[2])):
    with locking.output_lock(sys.argv[1], wait=True):
        with open(sys.argv[1]) as handle:
            value = int(handle.read())
        time.sleep(0.001)
        with open(sys.argv[1], "w") as handle:
            handle.write(str(value + 1))
"""


@pytest.fixture
def hold():
    """`hold(target, seconds)`: a process holding the lock of `target` (killed at teardown if still running)."""
    processes = []

    def start(target: Path, seconds: float = 600) -> subprocess.Popen:
        process = subprocess.Popen([sys.executable, "-c", HOLDER, str(target), str(seconds)], stdout=subprocess.PIPE,
                                   text=True)
        processes.append(process)
        assert process.stdout.readline() == "locked\n"
        return process

    yield start
    for process in processes:
        process.kill()
        process.wait()


def kill_hard(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGKILL)
    process.wait()


def test_a_second_writer_is_refused_naming_the_holder(tmp_path, hold):
    target = tmp_path / "out.jsonl"
    holder = hold(target)
    with pytest.raises(OutputLockedError) as refused:
        with output_lock(target):
            pass
    message = str(refused.value)
    assert f"{target} is being written by process {holder.pid} on {socket.gethostname()}" in message
    assert "locking.output_lock(sys.argv[1])" in message and str(target) in message  # its command line
    assert "--wait_for_lock" in message and str(lock_path(target)) in message


def test_the_lock_of_a_killed_holder_is_taken_over(tmp_path, hold, caplog):
    target = tmp_path / "folder"
    holder = hold(target)
    kill_hard(holder)
    assert f'"pid": {holder.pid}' in lock_path(target).read_text()  # SIGKILL: no clean-up, the file names it
    with output_lock(target) as path:
        assert f'"pid": {holder.pid}' not in path.read_text()
    assert f"taking over {path} from process {holder.pid}" in caplog.text
    assert not path.exists()  # released: removed


def test_wait_for_lock_waits_for_the_holder_then_proceeds(tmp_path, hold, caplog):
    target = tmp_path / "out.csv"
    holder = hold(target, seconds=2)
    start = time.monotonic()
    with output_lock(target, wait=True):
        assert time.monotonic() - start > 1.5  # once the holder was done
    assert holder.wait(timeout=60) == 0
    assert f"waiting for process {holder.pid}" in caplog.text


def test_one_holder_at_a_time_among_racing_processes(tmp_path):
    """Four processes increment a number under the lock: none of the 4 x 25 increments is lost, so no two held it at
    once, also while holders remove the lock file that waiters have opened."""
    counter = tmp_path / "counter"
    counter.write_text("0")
    racers = [subprocess.Popen([sys.executable, "-c", INCREMENTER, str(counter), "25"]) for _ in range(4)]
    assert [racer.wait(timeout=300) for racer in racers] == [0] * 4
    assert counter.read_text() == "100"
    assert not lock_path(counter).exists()


def test_the_lock_names_its_target_by_its_real_folder(tmp_path):
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    assert lock_path(tmp_path / "link" / "out.jsonl") == tmp_path.resolve() / "real" / "out.jsonl.lock"
    assert lock_path("relative/x") == Path.cwd().resolve() / "relative" / "x.lock"


# --- the commands -------------------------------------------------------------------------------------------------

CONVERTERS = {  # inputs that do not exist: a command holding the lock would only fail on them after taking it
    cli.convert_original_main: ["missing.pth", "{out}"],
    cli.convert_transformers_main: ["export", "missing", "{out}"],
    cli.imagenet_to_ast_main: ["missing.pth", "{out}", "--num_labels", "2"],
    cli.adapt_pretrained_main: ["missing", "{out}", "--max_length", "128", "--num_labels", "2"],
    cli.export_onnx_main: ["missing", "{out}/model.onnx"],
}


@pytest.mark.parametrize("main", CONVERTERS, ids=lambda main: main.__name__)
def test_converters_refuse_an_output_another_process_writes(tmp_path, hold, capsys, main):
    output = tmp_path / "out" / "model.onnx" if main is cli.export_onnx_main else tmp_path / "out"
    holder = hold(output)
    assert main([part.format(out=tmp_path / "out") for part in CONVERTERS[main]]) == 1
    error = capsys.readouterr().err
    assert error.startswith(f"error: {output} is being written by process {holder.pid}"), error
    assert not output.exists()


def test_a_converter_with_wait_for_lock_waits_then_writes(tmp_path, hold, capsys, caplog):
    model_dir = save_tiny_digit_classifier(tmp_path / "model")
    output = tmp_path / "exported"
    holder = hold(output, seconds=2)
    assert cli.convert_transformers_main(["export", str(model_dir), str(output), "--wait_for_lock"]) == 0
    assert f"waiting for process {holder.pid}" in caplog.text and holder.wait(timeout=60) == 0
    assert (output / "config.json").is_file() and not lock_path(output).exists()


@pytest.fixture(scope="module")
def script():
    return import_example("run_audio_classification")


def test_training_refuses_an_output_dir_another_run_writes_and_takes_over_a_killed_ones(tmp_path, hold, script):
    output_dir = tmp_path / "run"
    argv = ["--output_dir", str(output_dir), "--hidden_size", "32", "--num_hidden_layers", "1",
            "--num_attention_heads", "2", "--intermediate_size", "64", "--max_length", "64",
            "--synthetic_train_per_class", "2", "--synthetic_eval_per_class", "1", "--max_steps", "1",
            "--report_to", "none", "--disable_tqdm", "true"]  # fmt: skip
    holder = hold(output_dir)
    with pytest.raises(OutputLockedError, match=f"{output_dir} is being written by process {holder.pid}") as refused:
        script.main(argv)
    assert "or give another --output_dir (lock file" in str(refused.value)
    assert not output_dir.exists()  # refused before the demo data were written
    kill_hard(holder)
    result = script.main(argv)
    assert (output_dir / "model.safetensors").is_file() and result["num_eval_clips"] == 8
    assert not lock_path(output_dir).exists()  # released at the end of the run
