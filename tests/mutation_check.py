"""Mutation check: do the tests catch deliberate bugs? Not part of the default test command (it is slow).

Each mutant in `MUTANTS` is one text replacement in one file plus the pytest arguments that should catch it. The
script copies the repository (without .git and virtual environments) to a temporary folder, runs the union of the
selections once unmutated (a test that already fails there cannot kill anything), then for each mutant: replaces the
text in the copy, runs its selection with `PYTHONPATH` at the copy, restores the file. A mutant is *killed* when at
least one test fails or errors (or the run times out) and *survives* when all pass.

    python tests/mutation_check.py                 # every mutant; exit status 1 if any survives
    python tests/mutation_check.py --list          # names and selections
    python tests/mutation_check.py --exitfirst     # faster: names only the first killing test of each mutant
    python tests/mutation_check.py head_layer_norm_eps top_k_first_labels --json report.json

Keeping the list current: when code moves, update `path` / `old` / `tests` of the entry. A mutant whose `old` text is
not found exactly once in its file stops the run with an error naming it, so a stale entry can never pass silently.
The first four entries are bugs the suite let through (issue 13); the others are controls the suite is known to catch.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ElementTree
from dataclasses import asdict, dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# Not copied: version control, environments, caches and build outputs.
IGNORED = (".git", ".venv*", "__pycache__", "*.pyc", ".pytest_cache", "*.egg-info", "build", "dist")


@dataclass(frozen=True)
class Mutant:
    """One deliberate bug: replace `old` (exactly one occurrence) with `new` in `path`, run pytest on `tests`."""

    name: str
    path: str
    old: str
    new: str
    tests: tuple[str, ...]
    effect: str


MUTANTS = (
    Mutant(
        "head_layer_norm_eps",
        "modeling_ast/modeling_ast.py",
        "self.norm = nn.LayerNorm(config.hidden_size, eps=config.head_layer_norm_eps)",
        "self.norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)",
        (
            "tests/test_modeling.py", "tests/test_convert_original.py", "tests/test_convert_imagenet.py",
            "tests/test_convert_transformers.py", "tests/test_pipeline.py",
        ),
        "the classifier head's LayerNorm uses the encoder's eps (1e-6) instead of 1e-5",
    ),
    Mutant(
        "top_k_first_labels",
        "modeling_ast/pipeline_ast.py",
        "values, indices = scores.topk(k)",
        "values, indices = scores[:k].sort(descending=True)",
        ("tests/test_pipeline.py", "tests/test_long_audio.py", "tests/test_hub.py"),
        "pipeline top_k returns the first k labels, sorted, instead of the k best",
    ),
    Mutant(
        "threshold_keeps_nothing",
        "modeling_ast/pipeline_ast.py",
        'if item["score"] >= threshold]',
        'if item["score"] > 1.0 + threshold]',
        ("tests/test_long_audio.py", "tests/test_pipeline.py"),
        "the long-audio threshold keeps no label in any window",
    ),
    Mutant(
        "mixup_targets_one_minus_lambda",
        "modeling_ast/training/datasets.py",
        "target = mix_targets(target, self.label_space.multi_hot(other[1]), lam)",
        "target = mix_targets(target, self.label_space.multi_hot(other[1]), 1.0 - lam)",
        ("tests/test_training_data.py",),
        "mixup weights the targets with 1 - lambda while the waveforms use lambda",
    ),
    # Controls: bugs the suite is known to catch.
    Mutant(
        "mel_scale_break_frequency",
        "modeling_ast/fbank.py",
        "bin_mel = (1127.0 * torch.log(1.0 + bin_hz / 700.0))[:, None]",
        "bin_mel = (1127.0 * torch.log(1.0 + bin_hz / 800.0))[:, None]",
        ("tests/test_feature_extraction.py",),
        "mel filters on a different mel scale",
    ),
    Mutant(
        "no_dc_removal",
        "modeling_ast/fbank.py",
        "torch.sub(framed, framed.mean(dim=-1, keepdim=True), out=body)",
        "torch.sub(framed, 0.0 * framed.mean(dim=-1, keepdim=True), out=body)",
        ("tests/test_feature_extraction.py",),
        "frames keep their DC offset",
    ),
    Mutant(
        "positional_grid_suffix_crop",
        "modeling_ast/modeling_ast.py",
        "return grid[:, :num_time]",
        "return grid[:, -num_time:]",
        ("tests/test_modeling.py",),
        "short inputs get the last positional columns instead of the first",
    ),
    Mutant(
        "mask_leaks_one_padding_column",
        "modeling_ast/masking_ast.py",
        "return torch.arange(num_time, device=device) < torch.tensor(clip_time, device=device)[:, None]",
        "return torch.arange(num_time, device=device) <= torch.tensor(clip_time, device=device)[:, None]",
        ("tests/test_modeling.py",),
        "attention sees the first padding column of each clip",
    ),
    Mutant(
        "resampler_cutoff_above_nyquist",
        "modeling_ast/audio_utils.py",
        "cutoff = _ROLLOFF * min(orig, new) / orig",
        "cutoff = _ROLLOFF * max(orig, new) / orig",
        ("tests/test_feature_extraction.py", "tests/test_pipeline.py"),
        "downsampling without an anti-aliasing filter",
    ),
    Mutant(
        "fused_qkv_key_order",
        "modeling_ast/conversion/layouts.py",
        "return torch.cat([parts[index][1] for index in range(3)], dim=0)",
        "return torch.cat([parts[index][1] for index in (1, 0, 2)], dim=0)",
        ("tests/test_convert_transformers.py", "tests/test_modeling.py"),
        "transformers checkpoints load with query and key swapped",
    ),
)


@dataclass
class Outcome:
    """What one pytest run of a mutant gave."""

    name: str
    status: str  # "killed", "survived" or "timeout"
    killed_by: list[str]
    tests_run: int
    seconds: float


def copy_repository(target: Path) -> Path:
    """A plain copy of the repository under `target` (without .git, environments and caches)."""
    destination = target / REPO.name
    shutil.copytree(REPO, destination, ignore=shutil.ignore_patterns(*IGNORED), symlinks=True)
    return destination


def environment(copy: Path) -> dict[str, str]:
    """The environment of the test runs: the copy first on the path, no bytecode (a stale .pyc could hide a mutant)."""
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    env["PYTHONPATH"] = os.pathsep.join([str(copy), *filter(None, [os.environ.get("PYTHONPATH")])])
    return env


def check_imports_from(copy: Path) -> None:
    """RuntimeError unless `import modeling_ast` in the test environment loads the copy (not an installed package)."""
    result = subprocess.run(
        [sys.executable, "-c", "import modeling_ast; print(modeling_ast.__file__)"],
        cwd=copy, env=environment(copy), capture_output=True, text=True, check=True,
    )  # fmt: skip
    if not Path(result.stdout.strip()).resolve().is_relative_to(copy.resolve()):
        raise RuntimeError(f"modeling_ast imports from {result.stdout.strip()}, not from the copy {copy}")


def apply(mutant: Mutant, copy: Path) -> str:
    """Write the mutated file into the copy and return the original text; ValueError if `old` is not found once."""
    path = copy / mutant.path
    if not path.is_file():
        raise ValueError(f"mutant {mutant.name}: {mutant.path} does not exist (update its entry in MUTANTS)")
    original = path.read_text()
    count = original.count(mutant.old)
    if count != 1:
        raise ValueError(
            f"mutant {mutant.name}: expected the old text exactly once in {mutant.path}, found it {count} times "
            f"(update its entry in MUTANTS): {mutant.old!r}"
        )
    path.write_text(original.replace(mutant.old, mutant.new))
    return original


def run_pytest(
    copy: Path, tests: tuple[str, ...], report: Path, timeout: float, options: tuple[str, ...] = ()
) -> tuple[set[str], int] | None:
    """(failed or erroring test ids, number of tests run) of `pytest tests options` in the copy; None on timeout."""
    missing = [test for test in tests if not (copy / test.split("::")[0]).exists()]
    if missing:
        raise ValueError(f"test selection names files that do not exist: {missing} (update MUTANTS)")
    command = [sys.executable, "-m", "pytest", *tests, "-q", "-p", "no:cacheprovider", f"--junitxml={report}", *options]
    try:
        subprocess.run(command, cwd=copy, env=environment(copy), capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return None
    if not report.is_file():
        raise RuntimeError(f"pytest wrote no report for {tests}: it could not start (run the selection by hand)")
    failed, total = set(), 0
    for case in ElementTree.parse(report).iter("testcase"):
        total += 1
        if case.find("failure") is not None or case.find("error") is not None:
            failed.add(f"{case.get('classname')}::{case.get('name')}")
    return failed, total


def check_mutant(
    mutant: Mutant, copy: Path, baseline_failures: set[str], timeout: float, options: tuple[str, ...]
) -> Outcome:
    """Apply `mutant` in the copy, run its tests, restore the file."""
    original = apply(mutant, copy)
    start = time.monotonic()
    try:
        result = run_pytest(copy, mutant.tests, copy.parent / f"{mutant.name}.xml", timeout, options)
    finally:
        (copy / mutant.path).write_text(original)
    seconds = round(time.monotonic() - start, 1)
    if result is None:
        return Outcome(mutant.name, "timeout", [], 0, seconds)
    killers = sorted(result[0] - baseline_failures)
    return Outcome(mutant.name, "killed" if killers else "survived", killers, result[1], seconds)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="mutants to run (default: all)")
    parser.add_argument("--list", action="store_true", help="print the mutants and their test selections")
    parser.add_argument("--json", type=Path, help="also write the outcomes to this JSON file")
    parser.add_argument("--exitfirst", action="store_true", help="stop each run at its first failure (faster)")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds per pytest run (a timeout kills)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    known = {mutant.name: mutant for mutant in MUTANTS}
    unknown = sorted(set(args.names) - set(known))
    if unknown:
        raise SystemExit(f"unknown mutants {unknown}; known: {sorted(known)}")
    mutants = [known[name] for name in args.names] if args.names else list(MUTANTS)
    if args.list:
        for mutant in mutants:
            print(f"{mutant.name}: {mutant.effect}\n    {mutant.path}; tests: {' '.join(mutant.tests)}")
        return 0
    with tempfile.TemporaryDirectory(prefix="mutation-check-") as scratch:
        copy = copy_repository(Path(scratch))
        check_imports_from(copy)
        for mutant in mutants:  # every entry must apply before anything runs
            (copy / mutant.path).write_text(apply(mutant, copy))
        selection = tuple(dict.fromkeys(test for mutant in mutants for test in mutant.tests))
        print(f"baseline: {' '.join(selection)}", flush=True)
        baseline = run_pytest(copy, selection, Path(scratch) / "baseline.xml", args.timeout)
        if baseline is None:
            raise SystemExit("the unmutated test selection timed out; raise --timeout")
        if baseline[0]:
            print(f"failing without any mutant (ignored below): {sorted(baseline[0])}", flush=True)
        outcomes = []
        for mutant in mutants:
            outcome = check_mutant(mutant, copy, baseline[0], args.timeout, ("-x",) if args.exitfirst else ())
            outcomes.append(outcome)
            killers = ", ".join(outcome.killed_by[:5]) + (" ..." if len(outcome.killed_by) > 5 else "")
            print(
                f"{outcome.status:8} {mutant.name} ({outcome.tests_run} tests, {outcome.seconds:.0f} s)"
                + (f": {len(outcome.killed_by)} failed: {killers}" if outcome.killed_by else ""),
                flush=True,
            )
    if args.json:
        args.json.write_text(json.dumps([asdict(outcome) for outcome in outcomes], indent=2) + "\n")
    survivors = [outcome.name for outcome in outcomes if outcome.status == "survived"]
    print(f"{len(outcomes) - len(survivors)} of {len(outcomes)} mutants killed; surviving: {survivors or 'none'}")
    return 1 if survivors else 0


if __name__ == "__main__":
    sys.exit(main())
