"""Hub round trips, for real, against the loopback Hub of tests/hub_server.py (the `loopback_hub` fixture).

The unmodified huggingface_hub client pushes from this process; a fresh Python process, with an empty cache and only
environment variables pointing it at the server, downloads and runs the model. Its logits and pipeline scores must be
identical (atol 0) to those of the pushed weights in this process. Remote code (`modeling_ast.remote_code`) is tested
the same way, from the Hub and from a folder, in a process where `modeling_ast` cannot be imported at all.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import textwrap
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
import transformers
from safetensors.torch import load as load_safetensors

import modeling_ast
from modeling_ast import ASTConfig, ASTFeatureExtractor, ASTForAudioClassification
from modeling_ast.remote_code import RemoteCodeError, export_remote_code, remote_code_problems

from hub_server import LoopbackHub  # tests/ is on sys.path (pytest's default "prepend" import mode)
from tiny_models import tiny_model

LABELS = {0: "dog", 1: "rain", 2: "siren", 3: "speech", 4: "music"}
PLAIN_REPO = "org/tiny-ast"
REMOTE_REPO = "org/tiny-ast-remote-code"
SAMPLING_RATE = 16000
PACKAGE_ROOT = Path(modeling_ast.__file__).resolve().parents[1]  # the checkout this process imports the package from
CODE_FILES = {
    "modeling_ast.py", "masking_ast.py", "configuration_ast.py", "feature_extraction_ast.py", "fbank.py", "audio_utils.py",
    "input_checks.py",
}
SUBPROCESS_TIMEOUT_S = 120

# Runs in the fresh process. argv[1]: a JSON job {sources, remote_code, waveform, output, threads}.
CLIENT_SCRIPT = textwrap.dedent(
    '''
    import importlib
    import importlib.machinery
    import importlib.util
    import json
    import sys
    from pathlib import Path

    job = json.loads(Path(sys.argv[1]).read_text())


    def hide_package(name):
        """Make `name` unimportable: drop the meta-path finders (setuptools' editable finder) and sys.path entries
        that resolve it. A regular install beside transformers cannot be hidden that way: fail rather than pretend."""
        machinery = importlib.machinery
        standard = (machinery.PathFinder, machinery.BuiltinImporter, machinery.FrozenImporter)
        for finder in list(sys.meta_path):
            if finder not in standard and not isinstance(finder, standard) and hasattr(finder, "find_spec"):
                if finder.find_spec(name, None) is not None:
                    sys.meta_path.remove(finder)
        for entry in list(sys.path):
            if importlib.machinery.PathFinder.find_spec(name, [entry]) is not None:
                if importlib.machinery.PathFinder.find_spec("transformers", [entry]) is not None:
                    raise SystemExit(f"{name} is installed in {entry} beside transformers: cannot hide it")
                sys.path.remove(entry)
        sys.path_importer_cache.clear()
        importlib.invalidate_caches()
        assert importlib.util.find_spec(name) is None, f"{name} is still importable"


    if job["remote_code"]:
        hide_package("modeling_ast")

    import numpy as np
    import torch
    import transformers

    torch.set_num_threads(job["threads"])
    waveform = np.load(job["waveform"])
    trust = {"trust_remote_code": True} if job["remote_code"] else {}


    def qualified(obj):
        return f"{type(obj).__module__}.{type(obj).__qualname__}"


    results = {}
    for source in job["sources"]:
        if job["remote_code"]:
            model = transformers.AutoModelForAudioClassification.from_pretrained(source, **trust)
            extractor = transformers.AutoFeatureExtractor.from_pretrained(source, **trust)
            encoder = transformers.AutoModel.from_pretrained(source, **trust)
        else:
            import modeling_ast

            model = modeling_ast.ASTForAudioClassification.from_pretrained(source)
            extractor = modeling_ast.ASTFeatureExtractor.from_pretrained(source)
            encoder = None
        features = extractor(waveform, sampling_rate=extractor.sampling_rate, return_tensors="pt")
        with torch.no_grad():
            logits = model.eval()(**features).logits[0]
            hidden = None if encoder is None else encoder.eval()(**features).last_hidden_state[0, :2]
        classifier = transformers.pipeline("audio-classification", model=source, top_k=None, **trust)
        results[source] = {
            "logits": logits.tolist(),
            "encoder_tokens": None if hidden is None else hidden.tolist(),
            "scores": {item["label"]: item["score"] for item in classifier(waveform.copy())},
            "classes": [qualified(obj) for obj in (model, extractor, classifier.model, classifier.feature_extractor)]
            + ([] if encoder is None else [qualified(encoder)]),
            "pipeline": qualified(classifier),
        }
    results["modeling_ast_imported"] = "modeling_ast" in sys.modules
    Path(job["output"]).write_text(json.dumps(results))
    '''
)


def tiny_spread_classifier() -> ASTForAudioClassification:
    """The factory's tiny model as a multi-label classifier of LABELS, its head weights spread."""
    model = tiny_model(id2label=LABELS, problem_type="multi_label_classification")
    with torch.no_grad():
        model.classifier.fc.weight.normal_(0, 2.0)  # spread the scores so that they differ clearly
    return model


def write_waveform(tmp_path: Path) -> Path:
    """1.1 s of a chirp plus noise at 16 kHz, saved for the client process."""
    rng = np.random.default_rng(0)
    t = np.arange(int(1.1 * SAMPLING_RATE)) / SAMPLING_RATE
    waveform = (0.4 * np.sin(2 * np.pi * (300 + 900 * t) * t) + 0.05 * rng.standard_normal(t.size)).astype(np.float32)
    path = tmp_path / "waveform.npy"
    np.save(path, waveform)
    return path


def reference(model, extractor, waveform_path: Path, tmp_path: Path) -> tuple[np.ndarray, dict[str, float]]:
    """Logits and audio-classification pipeline scores in this process, of `model` as loaded from its own save.

    A loaded model is the right reference for bit-for-bit comparisons: safetensors tensors are used where they lie in
    the file, at offsets that are not 64-byte aligned, and CPU matmul kernels may round differently for such
    operands (1 ulp here). Every process that loads the same bytes computes the same values; the in-memory `model`
    agrees to float32 rounding, which is checked too.
    """
    checkpoint = tmp_path / "reference-checkpoint"
    model.save_pretrained(checkpoint)
    loaded = ASTForAudioClassification.from_pretrained(checkpoint).eval()
    waveform = np.load(waveform_path)
    features = extractor(waveform, sampling_rate=SAMPLING_RATE, return_tensors="pt")
    with torch.no_grad():
        logits = loaded(**features).logits[0].numpy()
        np.testing.assert_allclose(model(**features).logits[0].numpy(), logits, rtol=0, atol=1e-5)
    classifier = transformers.pipeline("audio-classification", model=loaded, feature_extractor=extractor, top_k=None)
    return logits, {item["label"]: item["score"] for item in classifier(waveform.copy())}


class ClientFailure(Exception):
    """A client process exited with an error or timed out."""


class ClientProcess:
    """CLIENT_SCRIPT running in a fresh interpreter, with `env` on top of this process's environment."""

    def __init__(self, workdir: Path, env: dict[str, str], sources: list[str], *, remote_code: bool, waveform: Path):
        workdir.mkdir(parents=True)
        script, job_file, self.output = workdir / "client.py", workdir / "job.json", workdir / "results.json"
        script.write_text(CLIENT_SCRIPT)
        job = {
            "sources": sources,
            "remote_code": remote_code,
            "waveform": str(waveform),
            "output": str(self.output),
            "threads": torch.get_num_threads(),  # same thread count: same float reduction order
        }
        job_file.write_text(json.dumps(job))
        child_env = {**os.environ, **env}
        child_env.pop("PYTHONPATH", None)
        if not remote_code:
            child_env["PYTHONPATH"] = str(PACKAGE_ROOT)  # the same modeling_ast this process imported
        self.process = subprocess.Popen(
            [sys.executable, str(script), str(job_file)],
            env=child_env,
            cwd=workdir,  # holds no modeling_ast: with PYTHONPATH unset, only an installed package could be found
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

    def result(self) -> dict:
        """The client's results; raises ClientFailure with its output if it failed or timed out."""
        try:
            log, _ = self.process.communicate(timeout=SUBPROCESS_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.kill()
            raise ClientFailure(f"client process timed out after {SUBPROCESS_TIMEOUT_S} s") from None
        if self.process.returncode != 0:
            raise ClientFailure(f"client process failed (exit code {self.process.returncode}):\n{log}")
        return json.loads(self.output.read_text())

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.communicate()


@dataclass
class RoundTrips:
    model: ASTForAudioClassification
    extractor: ASTFeatureExtractor
    logits: np.ndarray  # reference outputs of this process
    scores: dict[str, float]
    encoder_tokens: np.ndarray  # [CLS] and [DIST] of the bare encoder
    plain_home: Path  # HF_HOME of the client process that imports modeling_ast
    exported: Path | None  # the remote-code export to a local folder
    outcomes: dict[str, dict | str]  # "plain" / "remote" client results, or why there are none
    requests_after_push: list[tuple[str, str]]

    def results(self, client: str) -> dict:
        outcome = self.outcomes[client]
        if isinstance(outcome, str):
            pytest.fail(outcome, pytrace=False)
        return outcome


@pytest.fixture(scope="module")
def round_trips(loopback_hub, tmp_path_factory) -> RoundTrips:
    """Push the tiny model plainly and as remote code (and export it to a folder), then load everything in two fresh
    client processes run side by side (importing torch and transformers takes most of their time). A failing remote
    code export or client only fails the tests that need it."""
    tmp = tmp_path_factory.mktemp("round-trips")
    model, extractor = tiny_spread_classifier(), ASTFeatureExtractor(max_length=128)
    waveform = write_waveform(tmp)
    model.push_to_hub(PLAIN_REPO)
    extractor.push_to_hub(PLAIN_REPO)
    outcomes: dict[str, dict | str] = {}
    try:
        exported = export_remote_code(model, extractor, tmp / "exported")
        export_remote_code(model, extractor, REMOTE_REPO, push_to_hub=True)
    except RemoteCodeError as err:
        exported, outcomes["remote"] = None, f"remote-code export failed: {err}"
    pushed = len(loopback_hub.requests)

    plain_home, remote_home = tmp / "plain-home", tmp / "remote-home"
    clients = {
        "plain": ClientProcess(
            tmp / "plain", loopback_hub.client_env(plain_home), [PLAIN_REPO], remote_code=False, waveform=waveform
        )
    }
    if exported is not None:
        clients["remote"] = ClientProcess(
            tmp / "remote",
            loopback_hub.client_env(remote_home),
            [str(exported), REMOTE_REPO],
            remote_code=True,
            waveform=waveform,
        )
    try:
        logits, scores = reference(model, extractor, waveform, tmp)
        with torch.no_grad():
            features = extractor(np.load(waveform), sampling_rate=SAMPLING_RATE, return_tensors="pt")
            encoder_tokens = model.ast(**features).last_hidden_state[0, :2].numpy()
        for name, client in clients.items():
            try:
                outcomes[name] = client.result()
            except ClientFailure as err:
                outcomes[name] = str(err)
    finally:
        for client in clients.values():
            client.kill()
    return RoundTrips(
        model, extractor, logits, scores, encoder_tokens, plain_home, exported, outcomes,
        loopback_hub.requests[pushed:],
    )  # fmt: skip


def assert_same_outputs(result: dict, logits: np.ndarray, scores: dict[str, float]) -> None:
    np.testing.assert_array_equal(np.asarray(result["logits"], dtype=np.float32), logits)
    assert result["scores"] == scores


def test_push_to_hub_uploads_weights_through_lfs(round_trips, loopback_hub):
    files = loopback_hub.repo_files(PLAIN_REPO)
    assert {"config.json", "model.safetensors", "preprocessor_config.json", "README.md"} <= set(files)
    assert "model.safetensors" in loopback_hub.lfs_files(PLAIN_REPO)
    stored, state = load_safetensors(files["model.safetensors"]), round_trips.model.state_dict()
    assert stored.keys() == state.keys()
    assert all(torch.equal(stored[key], value) for key, value in state.items())
    used = loopback_hub.endpoints_used()
    assert "POST /{repo}.git/info/lfs/objects/batch" in used and "PUT /lfs-storage/{oid}" in used


def test_fresh_process_downloads_the_pushed_model_and_matches_exactly(round_trips):
    result = round_trips.results("plain")[PLAIN_REPO]
    assert_same_outputs(result, round_trips.logits, round_trips.scores)
    assert all(name.startswith("modeling_ast.") for name in result["classes"]), result["classes"]
    assert result["pipeline"] == "modeling_ast.pipeline_ast.ASTAudioClassificationPipeline"
    # The client really downloaded from the server, into its own empty cache.
    downloads = [path for method, path in round_trips.requests_after_push if method == "GET"]
    assert any(path.startswith(f"/{PLAIN_REPO}/resolve/") and path.endswith("/model.safetensors") for path in downloads)
    assert list((round_trips.plain_home / "hub").glob("models--org--tiny-ast/snapshots/*/model.safetensors"))


def test_remote_code_export_ships_code_and_auto_map(round_trips, loopback_hub):
    if round_trips.exported is None:
        pytest.fail(round_trips.outcomes["remote"], pytrace=False)
    folder = round_trips.exported
    saved = {path.name for path in folder.iterdir()}
    assert CODE_FILES | {"config.json", "model.safetensors", "preprocessor_config.json", "README.md"} <= saved
    assert set(loopback_hub.repo_files(REMOTE_REPO)) == saved | {".gitattributes"}
    config = json.loads((folder / "config.json").read_text())
    assert config["auto_map"] == {
        "AutoConfig": "configuration_ast.ASTConfig",
        "AutoModel": "modeling_ast.ASTModel",
        "AutoModelForAudioClassification": "modeling_ast.ASTForAudioClassification",
        "AutoFeatureExtractor": "feature_extraction_ast.ASTFeatureExtractor",
    }
    preprocessor = json.loads((folder / "preprocessor_config.json").read_text())
    assert preprocessor["auto_map"] == {"AutoFeatureExtractor": "feature_extraction_ast.ASTFeatureExtractor"}
    # The export's registration does not outlive it: later saves write plain checkpoints again.
    for cls in (ASTConfig, ASTForAudioClassification, ASTFeatureExtractor):
        assert cls._auto_class is None, cls
    assert not hasattr(round_trips.model.config, "auto_map") and not hasattr(round_trips.extractor, "auto_map")


@pytest.mark.parametrize("source", ["folder", "hub"])
def test_remote_code_runs_without_the_package_and_matches_exactly(round_trips, source):
    results = round_trips.results("remote")
    assert results["modeling_ast_imported"] is False
    result = results[str(round_trips.exported) if source == "folder" else REMOTE_REPO]
    assert_same_outputs(result, round_trips.logits, round_trips.scores)
    np.testing.assert_array_equal(np.asarray(result["encoder_tokens"], dtype=np.float32), round_trips.encoder_tokens)
    classes = result["classes"]
    assert all(name.startswith("transformers_modules.") for name in classes), classes
    assert [name.rsplit(".", 1)[-1] for name in classes] == [
        "ASTForAudioClassification", "ASTFeatureExtractor", "ASTForAudioClassification", "ASTFeatureExtractor",
        "ASTModel",
    ]  # fmt: skip
    assert result["pipeline"] == "transformers.pipelines.audio_classification.AudioClassificationPipeline"


def test_client_used_only_emulated_endpoints(round_trips, loopback_hub):
    assert loopback_hub.unknown_requests == []


def test_remote_code_problems_name_each_import_that_cannot_travel(tmp_path):
    (tmp_path / "sibling.py").write_text("X = 1\n")
    module = tmp_path / "module.py"
    module.write_text(
        textwrap.dedent(
            """
            from .sibling import X
            from .missing import Y
            from . import sibling
            from ..parent import Z


            def load():
                from .sub.pkg import W
                import modeling_ast.audio_utils
                from modeling_ast import ASTConfig
            """
        )
    )
    problems = remote_code_problems([module])
    assert sorted(int(problem.split(" ")[0].removeprefix("module.py:")) for problem in problems) == [3, 4, 5, 9, 10, 11]
    assert "subpackage" in problems[[p.startswith("module.py:9 ") for p in problems].index(True)]


def test_package_code_exports_cleanly():
    """The shipped files must satisfy transformers' remote-code rules (see modeling_ast/remote_code.py)."""
    package = Path(modeling_ast.__file__).parent
    assert remote_code_problems([package / name for name in sorted(CODE_FILES)]) == []


def test_export_refuses_code_that_imports_the_package(tmp_path, loopback_hub):
    module_file = tmp_path / "my_ast.py"
    module_file.write_text(
        "from modeling_ast import ASTForAudioClassification\n\n\nclass MyAST(ASTForAudioClassification):\n    pass\n"
    )
    spec = importlib.util.spec_from_file_location("my_ast", module_file)
    module = importlib.util.module_from_spec(spec)
    sys.modules["my_ast"] = module  # custom_object_save looks the module up there
    try:
        spec.loader.exec_module(module)
        model = module.MyAST(tiny_spread_classifier().config)
        with pytest.raises(RemoteCodeError, match="my_ast.py:1 imports the `modeling_ast` package by absolute name"):
            export_remote_code(model, None, tmp_path / "out")
        with pytest.raises(RemoteCodeError):
            export_remote_code(model, None, "org/refused", push_to_hub=True)
    finally:
        del sys.modules["my_ast"]
    assert not (tmp_path / "out").exists()
    assert "org/refused" not in loopback_hub.store.repos  # checked before the repository is created


def test_export_rejects_foreign_objects(tmp_path):
    with pytest.raises(TypeError, match="model must be"):
        export_remote_code(torch.nn.Linear(2, 2), ASTFeatureExtractor(), tmp_path)
    with pytest.raises(TypeError, match="feature_extractor must be"):
        export_remote_code(tiny_spread_classifier(), object(), tmp_path)
    assert not any(tmp_path.iterdir())


def test_loopback_hub_reports_gaps_and_bounds_requests(tmp_path):
    with LoopbackHub(tmp_path, max_body_bytes=64) as hub:  # its own server: the shared one must stay gap-free

        def call(method: str, path: str, data: bytes | None = None, token: str | None = hub.token) -> int:
            request = urllib.request.Request(hub.url + path, data=data, method=method)
            if token:
                request.add_header("Authorization", f"Bearer {token}")
            try:
                with urllib.request.urlopen(request, timeout=10) as response:
                    return response.status
            except urllib.error.HTTPError as err:
                assert err.headers["X-Error-Message"] and (method == "HEAD" or json.loads(err.read())["error"])
                return err.code

        create = b'{"name": "x", "organization": "org"}'
        assert call("GET", "/api/spaces/org/nothing") == 404
        assert hub.unknown_requests == ["GET /api/spaces/org/nothing"]
        assert call("POST", "/api/repos/create", create, token=None) == 401
        assert call("POST", "/api/repos/create", create, token="hf_wrong") == 401
        assert call("POST", "/api/repos/create", create) == 200
        assert call("POST", "/api/repos/create", create) == 409
        assert call("GET", "/api/models/org/absent") == 404
        assert call("HEAD", "/org/x/resolve/main/absent.json") == 404
        assert call("POST", "/api/repos/create", b"x" * 65) == 413
        assert hub.unknown_requests == ["GET /api/spaces/org/nothing"]
