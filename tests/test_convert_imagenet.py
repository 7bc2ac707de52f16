"""ImageNet ViT/DeiT -> AST conversion and new-task adaptation of a pretrained AST.

Parity with the AST authors' own code comes from `fixtures/imagenet_adaptation_reference.npz` (made by
`fixtures/make_imagenet_adaptation_reference.py` from the deterministic weights of `imagenet_layout.py`); parity with
transformers' ViT / DeiT is checked live on small random models, on inputs where the two are exactly equivalent.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import transformers
from safetensors.torch import load_file, save_file
from transformers import (
    AutoFeatureExtractor,
    DeiTConfig,
    DeiTForImageClassificationWithTeacher,
    ViTConfig,
    ViTForImageClassification,
    ViTModel,
)

import modeling_ast  # noqa: F401  (registers model_type "ast")
from imagenet_layout import (
    DEIT_BASE_384,
    DEIT_TINY_224,
    analytic_input,
    analytic_state_dict,
    grid_digest,
    head_shapes,
    original_ast_shapes,
    timm_vit_shapes,
)
from modeling_ast import ASTConfig, ASTFeatureExtractor, ASTForAudioClassification, ASTModel
from entry_points import entry_point_command
from modeling_ast.conversion.adapt import adapt_pretrained_ast, save_adapted_ast
from modeling_ast.conversion.cli import adapt_pretrained_main
from modeling_ast.conversion.common import read_label_names
from modeling_ast.conversion.imagenet import _num_heads, ast_from_imagenet, save_ast_from_imagenet
from modeling_ast.conversion.positional import adapt_axis, adapt_grid, middle_crop_start
from tiny_models import tiny_builtin_config, tiny_config

REPO_ROOT = Path(__file__).resolve().parents[1]
FIXTURE = Path(__file__).parent / "fixtures" / "imagenet_adaptation_reference.npz"
IMAGENET_CLI = "ast-imagenet-to-ast"
ADAPT_CLI = "ast-adapt-pretrained"
# Measured against the authors' code: grids 0.0 (the same F.interpolate calls), logits <= 1.4e-6 (float32 noise).
GRID_TOLERANCE = 1e-7  # two float32 steps at the grids' magnitude (<= 0.5)
LOGIT_TOLERANCE = 5e-6
# transformers' ViT / DeiT compute the same encoder with other float32 operations: measured <= 4.9e-6.
HIDDEN_STATE_TOLERANCE = 2e-5
# A small timm DeiT: 128-d (2 heads), 2 blocks, 8 x 8 ImageNet grid (a 128 x 128 image).
SMALL_DEIT = dict(embed_dim=128, depth=2, mlp_dim=256, num_patches=64)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Small models: one thread is as fast, and much faster when other jobs share the cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def reference() -> dict[str, np.ndarray]:
    with np.load(FIXTURE) as data:
        return dict(data)


@pytest.fixture(scope="module")
def deit_tiny() -> dict[str, torch.Tensor]:
    return analytic_state_dict(timm_vit_shapes(**DEIT_TINY_224))


def case_parts(case: str) -> tuple[int, int, int]:
    fstride, tstride, frames = (int(part[1:]) for part in case.split("_"))
    return fstride, tstride, frames


def assert_grid_matches(pos_embed: torch.Tensor, reference: dict, prefix: str) -> float:
    """Compare a positional embedding with the stored one (whole, or its digest); returns the max difference."""
    worst = 0.0
    for item, value in grid_digest(pos_embed).items():
        worst = max(worst, float(np.abs(value.numpy() - reference[f"{prefix}__{item}"]).max()))
    if f"{prefix}__pos_embed" in reference:
        worst = max(worst, float(np.abs(pos_embed.detach().numpy() - reference[f"{prefix}__pos_embed"]).max()))
    assert worst <= GRID_TOLERANCE, f"{prefix}: positional embedding differs from the original by {worst}"
    return worst


def set_analytic_head(model: ASTForAudioClassification, num_labels: int) -> None:
    """The analytic `mlp_head` the fixture gave the authors' model."""
    head = analytic_state_dict(head_shapes(num_labels, model.config.hidden_size))
    model.classifier.load_state_dict(
        {
            "norm.weight": head["mlp_head.0.weight"],
            "norm.bias": head["mlp_head.0.bias"],
            "fc.weight": head["mlp_head.1.weight"],
            "fc.bias": head["mlp_head.1.bias"],
        }
    )


def small_timm(distilled: bool = True, **overrides) -> dict[str, torch.Tensor]:
    return analytic_state_dict(timm_vit_shapes(**{**SMALL_DEIT, **overrides}, distilled=distilled))


def perturbed(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Add noise to every parameter (transformers initialises LayerNorms to exactly 1 / 0 and biases to 0)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.05 * torch.randn(parameter.shape, generator=generator))
    return model.eval()


# ------------------------------------------------------------------------------------------------ positional rule


def test_middle_crop_rule_reproduces_the_original_literals() -> None:
    for new in range(1, 25):
        assert middle_crop_start(24, new) == 12 - new // 2  # DeiT-384 grid
    for new in range(1, 15):
        assert middle_crop_start(14, new) == 7 - new // 2  # DeiT-224 grid
    for new in range(1, 102):
        assert middle_crop_start(101, new) == 50 - new // 2  # AudioSet time axis
    for new in range(1, 13):
        assert middle_crop_start(12, new) == 6 - new // 2  # AudioSet frequency axis
    with pytest.raises(ValueError, match="middle crop"):
        middle_crop_start(12, 13)


def test_adapt_grid_crops_the_middle_and_interpolates_time_first() -> None:
    grid = torch.arange(24 * 24, dtype=torch.float32).view(1, 1, 24, 24)
    cropped = adapt_grid(grid, 12, 12)
    assert torch.equal(cropped, grid[:, :, 6:18, 6:18])
    assert torch.equal(adapt_axis(grid, 24, axis=3), grid)
    stretched = adapt_grid(grid, 12, 101)  # the default AST grid: (24, 24) -> (24, 101) -> rows 6..17
    expected = F.interpolate(grid, size=(24, 101), mode="bilinear", align_corners=False)[:, :, 6:18]
    assert torch.equal(stretched, expected)
    both = adapt_grid(grid, 30, 40)
    expected = F.interpolate(F.interpolate(grid, size=(24, 40), mode="bilinear"), size=(30, 40), mode="bilinear")
    assert torch.equal(both, expected)


# ------------------------------------------------------------------------------ ImageNet path vs the authors' code
# The ImageNet source sets the encoder's sizes, so the ASTConfigs given to ast_from_imagenet below only carry the audio
# side (frames, strides, labels) and are written out rather than taken from tests/tiny_models.py.


@pytest.mark.parametrize("case", ["f10_t10_T1024", "f10_t10_T128", "f12_t12_T512", "f16_t16_T100", "f6_t10_T256"])
def test_deit_tiny_matches_the_original(case: str, reference: dict, deit_tiny: dict) -> None:
    fstride, tstride, frames = case_parts(case)
    prefix = f"imagenet_tiny224__{case}"
    config = ASTConfig(frequency_stride=fstride, time_stride=tstride, max_length=frames, num_labels=5)
    model = ast_from_imagenet(deit_tiny, config, seed=0)
    assert model.config.patch_grid == tuple(reference[f"{prefix}__grid"])
    assert (model.config.hidden_size, model.config.num_attention_heads, model.config.layer_norm_eps) == (192, 3, 1e-6)
    assert_grid_matches(model.ast.embeddings.pos_embed, reference, prefix)
    kernel = model.ast.embeddings.patch_embed.proj.weight.detach().numpy()
    assert np.abs(kernel - reference["imagenet_tiny224__patch_weight"]).max() <= GRID_TOLERANCE
    set_analytic_head(model, 5)
    with torch.no_grad():
        logits = model(analytic_input(2, frames)).logits.numpy()
    difference = np.abs(logits - reference[f"{prefix}__logits"]).max()
    assert difference <= LOGIT_TOLERANCE, f"{case}: logits differ from the original by {difference}"


@pytest.mark.parametrize("case", ["f10_t10_T1024", "f10_t10_T512", "f16_t16_T1024", "f12_t12_T128"])
def test_deit_base_384_grid_matches_the_original(case: str, reference: dict) -> None:
    # The positional values depend on the tensor name and shape only, so one block stands in for twelve.
    source = analytic_state_dict(timm_vit_shapes(**{**DEIT_BASE_384, "depth": 1}))
    fstride, tstride, frames = case_parts(case)
    model = ast_from_imagenet(
        source, ASTConfig(frequency_stride=fstride, time_stride=tstride, max_length=frames), add_classifier=False
    )
    assert model.config.patch_grid == tuple(reference[f"imagenet_base384__{case}__grid"])
    assert_grid_matches(model.embeddings.pos_embed, reference, f"imagenet_base384__{case}")


# ---------------------------------------------------------------------------------------------- timm key variants


def _weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {key: value.clone() for key, value in model.state_dict().items()}


def test_timm_wrappers_and_file_formats_give_the_same_model(tmp_path: Path) -> None:
    source = small_timm()
    config = ASTConfig(max_length=128, num_labels=3)
    expected = _weights(ast_from_imagenet(source, config, seed=1))
    torch.save({"model": {f"module.{k}": v for k, v in source.items()}}, tmp_path / "deit_release.pth")
    save_file({f"model.{k}": v.contiguous() for k, v in source.items()}, tmp_path / "lightning.safetensors")
    variants = [
        {f"module.{k}": v for k, v in source.items()},
        {f"model.{k}": v for k, v in source.items()},
        {k: v.half() for k, v in source.items()},  # upcast to float32 on the way
        tmp_path / "deit_release.pth",
        str(tmp_path / "lightning.safetensors"),
    ]
    for variant in variants:
        converted = _weights(ast_from_imagenet(variant, config, seed=1))
        tolerance = 1e-3 if isinstance(variant, dict) and next(iter(variant.values())).dtype == torch.half else 0
        for key, value in expected.items():
            torch.testing.assert_close(converted[key], value, atol=tolerance, rtol=0, msg=key)


def test_timm_mapping_sums_kernels_and_keeps_blocks() -> None:
    source = small_timm()
    model = ast_from_imagenet(source, ASTConfig(max_length=128, frequency_stride=16, time_stride=16), seed=0)
    ours = model.ast.state_dict()
    assert model.config.patch_grid == (8, 8)  # the ImageNet grid: no positional adaptation
    assert torch.equal(ours["embeddings.pos_embed"], source["pos_embed"])
    assert torch.equal(ours["embeddings.patch_embed.proj.weight"], source["patch_embed.proj.weight"].sum(1, True))
    assert torch.equal(ours["embeddings.patch_embed.proj.bias"], source["patch_embed.proj.bias"])
    assert torch.equal(ours["embeddings.dist_token"], source["dist_token"])
    for key in ("blocks.1.attn.qkv.weight", "blocks.0.mlp.fc2.bias", "norm.weight"):
        assert torch.equal(ours[key], source[key])
    assert model.config.num_attention_heads == 2 and model.config.intermediate_size == 256


def test_vit_without_dist_token_copies_cls() -> None:
    source = small_timm(distilled=False)
    assert "dist_token" not in source
    model = ast_from_imagenet(source, ASTConfig(max_length=128, frequency_stride=16, time_stride=16), seed=0)
    embeddings = model.ast.embeddings
    assert torch.equal(embeddings.dist_token, embeddings.cls_token)
    assert torch.equal(embeddings.pos_embed[:, 1], source["pos_embed"][:, 0])
    assert torch.equal(embeddings.pos_embed[:, 2:], source["pos_embed"][:, 1:])
    with torch.no_grad():
        states = model.ast(torch.randn(2, 128, 128)).last_hidden_state
    torch.testing.assert_close(states[:, 0], states[:, 1])  # so the pooling equals the [CLS] state


@pytest.mark.parametrize(
    ("fstride", "tstride", "frames"), [(10, 10, 1024), (10, 10, 512), (12, 12, 300), (16, 16, 128), (16, 8, 64)]
)
def test_any_stride_and_length_runs(fstride: int, tstride: int, frames: int) -> None:
    model = ast_from_imagenet(
        small_timm(), ASTConfig(frequency_stride=fstride, time_stride=tstride, max_length=frames, num_labels=4)
    )
    rows, cols = model.config.patch_grid
    assert model.ast.embeddings.pos_embed.shape == (1, 2 + rows * cols, 128)
    with torch.no_grad():
        assert model(torch.randn(1, frames, 128)).logits.shape == (1, 4)


# ------------------------------------------------------------------------------------- transformers ViT and DeiT


def _hf_kwargs(layer_norm_eps: float = 1e-12) -> dict:
    # image (mel rows) x (frame columns) = 128 x 96: an 8 x 6 grid, the AST grid at strides 16 for 96 frames.
    return dict(
        hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=96, image_size=[128, 96],
        patch_size=16, layer_norm_eps=layer_norm_eps,
    )


AST_FOR_HF = ASTConfig(max_length=96, frequency_stride=16, time_stride=16, num_labels=2)


def _as_image(spectrogram: torch.Tensor) -> torch.Tensor:
    """(B, T, F) spectrogram -> (B, 3, F, T) image, the mono input copied to the three channels."""
    return spectrogram.transpose(1, 2).unsqueeze(1).repeat(1, 3, 1, 1)


@pytest.mark.parametrize("layer_norm_eps", [1e-12, 1e-6])
def test_transformers_deit_is_exactly_equivalent(tmp_path: Path, layer_norm_eps: float) -> None:
    teacher = perturbed(DeiTForImageClassificationWithTeacher(DeiTConfig(**_hf_kwargs(layer_norm_eps))))
    teacher.save_pretrained(tmp_path / "deit")  # on-disk (legacy) key names
    spectrogram = torch.randn(2, 96, 128)
    with torch.no_grad():
        expected = teacher.deit(pixel_values=_as_image(spectrogram)).last_hidden_state
    sources = {
        "checkpoint dir": tmp_path / "deit",
        "model": teacher,
        "in-memory names": teacher.state_dict(),
        "DeiTModel": teacher.deit,
    }
    for name, source in sources.items():
        kwargs = {"layer_norm_eps": layer_norm_eps, "imagenet_grid": (8, 6), "num_attention_heads": 4}
        kwargs = kwargs if isinstance(source, dict) else {}
        model = ast_from_imagenet(source, AST_FOR_HF, **kwargs)
        assert model.config.layer_norm_eps == layer_norm_eps, name
        assert model.config.num_attention_heads == 4, name
        with torch.no_grad():
            ours = model.ast(spectrogram).last_hidden_state
        difference = (ours - expected).abs().max().item()
        assert difference < HIDDEN_STATE_TOLERANCE, f"{name}: {difference}"


def test_transformers_vit_matches_with_the_cls_copy(tmp_path: Path) -> None:
    vit = perturbed(ViTForImageClassification(ViTConfig(**_hf_kwargs())))
    vit.save_pretrained(tmp_path / "vit")
    spectrogram = torch.randn(2, 96, 128)
    # The ViT with its [CLS] embedding duplicated at position 1 is what our converted model computes.
    hook = vit.vit.embeddings.register_forward_hook(lambda module, args, out: torch.cat([out[:, :1], out], dim=1))
    with torch.no_grad():
        expected = vit.vit(pixel_values=_as_image(spectrogram)).last_hidden_state
    hook.remove()
    for source in (tmp_path / "vit", vit.vit, ViTModel(ViTConfig(**_hf_kwargs())).state_dict()):
        model = ast_from_imagenet(source, AST_FOR_HF, add_classifier=False, imagenet_grid=(8, 6))
        assert isinstance(model, ASTModel)
        if isinstance(source, dict):
            continue  # only the layout is checked for the random, unperturbed model
        with torch.no_grad():
            ours = model(spectrogram).last_hidden_state
        assert (ours - expected).abs().max().item() < HIDDEN_STATE_TOLERANCE


def test_hub_repositories_of_transformers_and_timm(loopback_hub, tmp_path: Path) -> None:
    """Hub ids work like local checkpoints: a transformers DeiT (its config.json gives the 4 heads and the 8 x 6 grid,
    neither inferable from the weights) and a timm repository (model.safetensors + timm's own config.json)."""
    from huggingface_hub import HfApi

    teacher = perturbed(DeiTForImageClassificationWithTeacher(DeiTConfig(**_hf_kwargs())))
    teacher.push_to_hub("org/tiny-deit")
    spectrogram = torch.randn(2, 96, 128)
    with torch.no_grad():
        expected = teacher.deit(pixel_values=_as_image(spectrogram)).last_hidden_state
        ours = ast_from_imagenet("org/tiny-deit", AST_FOR_HF).ast(spectrogram).last_hidden_state
    assert (ours - expected).abs().max().item() < HIDDEN_STATE_TOLERANCE

    timm_dir = tmp_path / "timm"
    timm_dir.mkdir()
    save_file(small_timm(), timm_dir / "model.safetensors")
    timm_config = {"architecture": "deit_small_test", "num_classes": 1000, "num_features": 128,
                   "global_pool": "token", "pretrained_cfg": {"input_size": [3, 128, 128], "num_classes": 1000}}
    (timm_dir / "config.json").write_text(json.dumps(timm_config))
    HfApi().create_repo("org/tiny-timm-deit")
    HfApi().upload_folder(repo_id="org/tiny-timm-deit", folder_path=timm_dir)
    config = ASTConfig(max_length=128, num_labels=3)
    from_file = _weights(ast_from_imagenet(small_timm(), config, seed=1))
    from_hub = _weights(ast_from_imagenet("org/tiny-timm-deit", config, seed=1))
    for key, value in from_file.items():
        torch.testing.assert_close(from_hub[key], value, atol=0, rtol=0, msg=key)

    with pytest.raises(FileNotFoundError, match="reachable Hub repository"):
        ast_from_imagenet("org/absent", config)
    with pytest.raises(FileNotFoundError, match="no checkpoint file at"):
        ast_from_imagenet(tmp_path / "absent.pth", config)


# ------------------------------------------------------------------------------------------ new-task adaptation


def _analytic_audioset_source(depth: int) -> ASTForAudioClassification:
    """Our model holding the analytic AudioSet checkpoint the fixture gave the authors' code."""
    original = analytic_state_dict(original_ast_shapes(depth=depth))
    renames = {
        "v.cls_token": "embeddings.cls_token",
        "v.dist_token": "embeddings.dist_token",
        "v.pos_embed": "embeddings.pos_embed",
        "v.patch_embed.proj.weight": "embeddings.patch_embed.proj.weight",
        "v.patch_embed.proj.bias": "embeddings.patch_embed.proj.bias",
    }
    encoder = {
        renames.get(key, key[len("v."):]): value
        for key, value in original.items()
        if key.startswith("v.") and not key.startswith(("v.head.", "v.head_dist."))
    }
    model = ASTForAudioClassification(ASTConfig(num_hidden_layers=depth, num_labels=527))
    model.ast.load_state_dict(encoder, strict=True)
    return model


@pytest.fixture(scope="module")
def audioset_source() -> ASTForAudioClassification:
    return _analytic_audioset_source(depth=2)


AUDIOSET_CASES = [
    "f10_t10_T1024", "f10_t10_T512", "f10_t10_T128", "f10_t10_T2048",
    "f12_t12_T1024", "f16_t16_T1024", "f8_t8_T1024", "f16_t16_T512",
]


@pytest.mark.parametrize("case", AUDIOSET_CASES)
def test_audioset_grid_matches_the_original(case: str, reference: dict, audioset_source) -> None:
    fstride, tstride, frames = case_parts(case)
    prefix = f"audioset__{case}"
    # "index" is the authors' rule for every stride; at stride 10 the default "frames" mapping is the same thing.
    mappings = ["index", "frames"] if fstride == tstride == 10 else ["index"]
    for mapping in mappings:
        model = adapt_pretrained_ast(
            audioset_source, frames, 50, frequency_stride=fstride, time_stride=tstride, stride_mapping=mapping
        )
        assert model.config.patch_grid == tuple(reference[f"{prefix}__grid"])
        assert_grid_matches(model.ast.embeddings.pos_embed, reference, prefix)


def test_audioset_logits_match_the_original(reference: dict, audioset_source) -> None:
    model = adapt_pretrained_ast(audioset_source, 128, 35, seed=0)
    set_analytic_head(model, 35)
    with torch.no_grad():
        logits = model(analytic_input(2, 128)).logits.numpy()
    difference = np.abs(logits - reference["audioset__f10_t10_T128__logits"]).max()
    assert difference <= LOGIT_TOLERANCE, difference


# The sizes of a small AudioSet-shaped AST (with the factory's 2 blocks): 1024 frames, 64-d, 2 heads.
AUDIOSET_SHAPED = dict(hidden_size=64, num_attention_heads=2, intermediate_size=128, max_length=1024)


@pytest.fixture(scope="module")
def small_audioset() -> ASTForAudioClassification:
    """A small random AudioSet-shaped AST: 128 mel bins x 1024 frames, strides 10, 12 x 101 grid, 64-d."""
    torch.manual_seed(0)
    config = tiny_config(**AUDIOSET_SHAPED, num_labels=527)
    return perturbed(ASTForAudioClassification(config))


@pytest.mark.parametrize(
    ("frames", "labels", "problem_type", "grid"),
    [(512, 50, "single_label_classification", (12, 50)), (128, 35, "multi_label_classification", (12, 12))],
)
def test_new_task_esc50_and_speech_commands(small_audioset, frames, labels, problem_type, grid) -> None:
    model = adapt_pretrained_ast(small_audioset, frames, labels, problem_type=problem_type, seed=0)
    assert model.config.patch_grid == grid
    assert (model.config.max_length, model.config.num_labels, model.config.problem_type) == (
        frames, labels, problem_type
    )
    assert model.classifier.fc.weight.shape == (labels, 64)
    source, ours = small_audioset.ast.state_dict(), model.ast.state_dict()
    for key, value in source.items():
        if key != "embeddings.pos_embed":
            assert torch.equal(ours[key], value), key
    pos, source_pos = ours["embeddings.pos_embed"], source["embeddings.pos_embed"]
    assert torch.equal(pos[:, :2], source_pos[:, :2])
    source_grid = source_pos[0, 2:].view(12, 101, 64)
    start = 50 - grid[1] // 2  # middle columns, as the original
    assert torch.equal(pos[0, 2:].view(*grid, 64), source_grid[:, start : start + grid[1]])
    with torch.no_grad():
        assert model(torch.randn(2, frames, 128)).logits.shape == (2, labels)


@pytest.mark.parametrize(("stride", "frames"), [(12, 1024), (16, 1024), (16, 512), (12, 128)])
def test_new_task_other_strides_map_patch_positions(small_audioset, stride: int, frames: int) -> None:
    model = adapt_pretrained_ast(small_audioset, frames, 10, frequency_stride=stride, time_stride=stride)
    config = model.config
    assert model.ast.embeddings.patch_embed.proj.stride == (stride, stride)
    rows, cols = config.patch_grid
    assert (rows, cols) == ((128 - 16) // stride + 1, (frames - 16) // stride + 1)
    grid = model.ast.embeddings.pos_embed[0, 2:].view(rows, cols, 64)
    source = small_audioset.ast.embeddings.pos_embed[0, 2:].view(12, 101, 64).to(torch.float64)
    # Frames mapping: the 1024-frame grid at the new stride samples the source at index i * stride / 10, linearly
    # (clamped to the last patch); a shorter input then keeps the middle columns of that grid.
    full_cols = (1024 - 16) // stride + 1
    offset = full_cols // 2 - cols // 2 if cols < full_cols else 0

    def expected(row: int, col: int) -> torch.Tensor:
        fr, fc = min(row * stride / 10, 11), min((col + offset) * stride / 10, 100)
        r0, c0 = int(fr), int(fc)
        r1, c1 = min(r0 + 1, 11), min(c0 + 1, 100)
        wr, wc = fr - r0, fc - c0
        top = (1 - wc) * source[r0, c0] + wc * source[r0, c1]
        bottom = (1 - wc) * source[r1, c0] + wc * source[r1, c1]
        return (1 - wr) * top + wr * bottom

    for row, col in [(0, 0), (1, 1), (rows - 1, cols - 1), (rows // 2, cols // 3), (rows - 2, 1)]:
        # float32 rounding of the interpolated values (measured 7e-9)
        torch.testing.assert_close(grid[row, col].to(torch.float64), expected(row, col), atol=1e-7, rtol=0)
    with torch.no_grad():
        assert model(torch.randn(1, frames, 128)).logits.shape == (1, 10)


def test_new_task_index_mapping_is_the_original_rule(small_audioset) -> None:
    model = adapt_pretrained_ast(small_audioset, 1024, 5, frequency_stride=16, time_stride=16, stride_mapping="index")
    grid = model.ast.embeddings.pos_embed[0, 2:].view(8, 64, 64)
    source = small_audioset.ast.embeddings.pos_embed[0, 2:].view(12, 101, 64)
    assert torch.equal(grid, source[6 - 4 : 6 - 4 + 8, 50 - 32 : 50 - 32 + 64])


def test_new_task_from_saved_directory_and_labels(tmp_path: Path, small_audioset) -> None:
    small_audioset.save_pretrained(tmp_path / "source")
    ASTFeatureExtractor(max_length=1024).save_pretrained(tmp_path / "source")
    names = ["dog", "rain", "siren"]
    output = save_adapted_ast(
        tmp_path / "source", tmp_path / "out", 512, id2label=names, mean=-6.6268077, std=5.358466, seed=0
    )
    assert {path.name for path in output.iterdir()} == {"config.json", "model.safetensors", "preprocessor_config.json"}
    model = ASTForAudioClassification.from_pretrained(output)
    assert model.config.id2label == dict(enumerate(names)) and model.config.label2id["siren"] == 2
    extractor = AutoFeatureExtractor.from_pretrained(output)
    assert isinstance(extractor, ASTFeatureExtractor)
    assert (extractor.max_length, extractor.mean, extractor.std) == (512, -6.6268077, 5.358466)
    direct = adapt_pretrained_ast(small_audioset, 512, id2label=names, seed=0)
    for key, value in direct.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key
    with pytest.raises(ValueError, match="disagrees"):
        adapt_pretrained_ast(small_audioset, 512, num_labels=4, id2label=names)
    with pytest.raises(ValueError, match="num_labels"):
        adapt_pretrained_ast(small_audioset, 512)


def test_new_task_from_transformers_builtin_ast(tmp_path: Path) -> None:
    config = tiny_builtin_config(**AUDIOSET_SHAPED)
    builtin = perturbed(transformers.ASTForAudioClassification(config))
    builtin.save_pretrained(tmp_path / "builtin")
    same_grid = adapt_pretrained_ast(tmp_path / "builtin", 1024, 3)
    assert same_grid.config.layer_norm_eps == 1e-12  # the source's encoder eps is kept
    spectrogram = torch.randn(2, 1024, 128)
    with torch.no_grad():
        expected = builtin.audio_spectrogram_transformer(spectrogram).last_hidden_state
        ours = same_grid.ast(spectrogram).last_hidden_state
    assert (ours - expected).abs().max().item() < 1e-6  # the same float operations: measured 0.0
    esc = adapt_pretrained_ast(tmp_path / "builtin", 512, 50)
    assert esc.config.patch_grid == (12, 50)


def test_read_label_names(tmp_path: Path) -> None:
    (tmp_path / "labels.csv").write_text("index,mid,display_name\n0,/m/a,Speech\n1,/m/b,\"Dog, bark\"\n")
    (tmp_path / "labels.json").write_text(json.dumps({"1": "b", "0": "a"}))
    (tmp_path / "labels.txt").write_text("x\n\ny\n")
    assert read_label_names(tmp_path / "labels.csv") == ["Speech", "Dog, bark"]
    assert read_label_names(tmp_path / "labels.json") == ["a", "b"]
    assert read_label_names(tmp_path / "labels.txt") == ["x", "y"]
    assert read_label_names("yes, no") == ["yes", "no"]


def test_read_label_names_does_not_take_a_missing_file_for_a_name(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="labels.csv does not exist"):
        read_label_names(str(tmp_path / "labels.csv"))
    (tmp_path / "labels.txt").write_text("dog\ncat\ndog\n")
    with pytest.raises(ValueError, match=r"labels\.txt: label names must be unique.*'dog' \(0 and 2\)"):
        read_label_names(tmp_path / "labels.txt")


# ------------------------------------------------------------------------------------------------------ bad input


def test_unknown_layout_lists_missing_and_unexpected_keys() -> None:
    with pytest.raises(ValueError, match=r"missing keys.*unexpected keys.*conv1\.weight"):
        ast_from_imagenet({"conv1.weight": torch.zeros(4, 3, 7, 7), "fc.weight": torch.zeros(10, 4)})
    ast_like = {f"module.v.{k}": v for k, v in small_timm().items()}
    with pytest.raises(ValueError, match="adapt_pretrained_ast"):
        ast_from_imagenet(ast_like)


def test_incomplete_checkpoint_lists_missing_and_unexpected_keys() -> None:
    source = small_timm()
    del source["blocks.1.mlp.fc1.bias"]
    source["blocks.0.ls1.gamma"] = torch.ones(128)  # layer scale changes the maths: refuse, do not drop
    with pytest.raises(ValueError, match=r"missing keys \(1\): blocks\.1\.mlp\.fc1\.bias.*blocks\.0\.ls1\.gamma"):
        ast_from_imagenet(source)


def test_shape_mismatch_is_named() -> None:
    source = small_timm()
    source["blocks.1.attn.qkv.weight"] = torch.zeros(300, 128)
    with pytest.raises(ValueError, match=r"blocks\.1\.attn\.qkv\.weight: expected \(384, 128\), got \(300, 128\)"):
        ast_from_imagenet(source)
    source = small_timm()
    source["pos_embed"] = torch.zeros(1, 2 + 60, 128)
    with pytest.raises(ValueError, match="not a square grid"):
        ast_from_imagenet(source)


@pytest.mark.parametrize(("width", "heads"), [(192, 3), (384, 6), (768, 12), (1024, 16), (1280, 16), (512, 8)])
def test_head_count_table(width: int, heads: int) -> None:
    assert _num_heads(width, None, None) == heads
    assert _num_heads(width, None, {"num_attention_heads": 4}) == 4  # a transformers config wins
    assert _num_heads(width, 2, {"num_attention_heads": 4}) == 2  # an explicit override wins


def test_head_count_inference_and_override() -> None:
    source = small_timm()
    assert ast_from_imagenet(source, add_classifier=False).config.num_attention_heads == 2
    assert ast_from_imagenet(source, add_classifier=False, num_attention_heads=8).config.num_attention_heads == 8
    with pytest.raises(ValueError, match="multiple of num_attention_heads"):
        ast_from_imagenet(source, num_attention_heads=3)


def test_new_task_rejects_non_ast_directory(tmp_path: Path) -> None:
    ViTModel(ViTConfig(**_hf_kwargs())).save_pretrained(tmp_path / "vit")
    with pytest.raises(ValueError, match="ast_from_imagenet"):
        adapt_pretrained_ast(tmp_path / "vit", 512, 50)


def test_corrupt_safetensors_are_named(tmp_path: Path, small_audioset) -> None:
    """A truncated download: every reader names the file instead of raising safetensors' bare SafetensorError."""
    save_file(small_timm(), tmp_path / "deit.safetensors")
    truncated = (tmp_path / "deit.safetensors").read_bytes()[:-100]
    (tmp_path / "deit.safetensors").write_bytes(truncated)
    with pytest.raises(ValueError, match=r"could not read safetensors file .*deit\.safetensors"):
        ast_from_imagenet(tmp_path / "deit.safetensors")
    small_audioset.save_pretrained(tmp_path / "source")
    weights = tmp_path / "source" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])
    with pytest.raises(ValueError, match=r"could not read safetensors file .*source/model\.safetensors"):
        adapt_pretrained_ast(tmp_path / "source", 512, 50)
    (tmp_path / "source" / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"source/config\.json is not a valid UTF-8 JSON file"):
        adapt_pretrained_ast(tmp_path / "source", 512, 50)


def test_wrong_qkv_shape_is_named(tmp_path: Path, small_audioset) -> None:
    small_audioset.save_pretrained(tmp_path / "source")
    weights = load_file(tmp_path / "source" / "model.safetensors")
    weights["ast.blocks.1.attn.qkv.weight"] = weights["ast.blocks.1.attn.qkv.weight"][:64].contiguous()
    save_file(weights, tmp_path / "source" / "model.safetensors")
    with pytest.raises(ValueError, match=r"blocks\.1\.attn\.qkv\.weight: expected \(192, 64\), got \(64, 64\)"):
        adapt_pretrained_ast(tmp_path / "source", 512, 50)

    builtin = transformers.ASTForAudioClassification(tiny_builtin_config(**AUDIOSET_SHAPED, num_hidden_layers=1))
    builtin.save_pretrained(tmp_path / "builtin")
    weights = load_file(tmp_path / "builtin" / "model.safetensors")
    key = "audio_spectrogram_transformer.encoder.layer.0.attention.attention.key.weight"
    weights[key] = weights[key][:, :32].contiguous()
    save_file(weights, tmp_path / "builtin" / "model.safetensors")
    with pytest.raises(ValueError, match=rf"into ast\.blocks\.0\.attn\.qkv\.weight: .*{key} \(64, 32\)"):
        adapt_pretrained_ast(tmp_path / "builtin", 512, 50)


def test_nan_weights_are_named_in_a_warning(small_audioset, caplog) -> None:
    source = small_timm()
    source["blocks.1.mlp.fc2.weight"][0, 0] = float("nan")
    with caplog.at_level("WARNING"):
        ast_from_imagenet(source, ASTConfig(max_length=128))
    assert "the state dict given: NaN or infinite values in blocks.1.mlp.fc2.weight" in caplog.text
    caplog.clear()
    poisoned = copy.deepcopy(small_audioset)
    with torch.no_grad():
        poisoned.ast.norm.bias[3] = float("inf")
    with caplog.at_level("WARNING"):
        adapt_pretrained_ast(poisoned, 512, 50)
    assert "the ASTModel given: NaN or infinite values in norm.bias" in caplog.text


# ------------------------------------------------------------------------------------------------------------ CLIs


@pytest.mark.parametrize("cli", [IMAGENET_CLI, ADAPT_CLI])
def test_cli_help(cli: str) -> None:
    result = subprocess.run([*entry_point_command(cli), "--help"], capture_output=True, text=True, check=True)
    assert "--max_length" in result.stdout and "--num_labels" in result.stdout and "--time_stride" in result.stdout


def _run_cli(cli: str, *args: str) -> subprocess.CompletedProcess:
    """Run a CLI on the modeling_ast this process imported (installed or not), single-threaded."""
    package_root = str(Path(modeling_ast.__file__).resolve().parents[1])
    python_path = os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": python_path, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [*entry_point_command(cli), *map(str, args)], capture_output=True, text=True, env=env, timeout=300
    )


def test_cli_convert_then_adapt(tmp_path: Path) -> None:
    torch.save(small_timm(), tmp_path / "deit_small.pth")
    result = _run_cli(
        IMAGENET_CLI, tmp_path / "deit_small.pth", tmp_path / "imagenet_ast", "--max_length", "1024",
        "--frequency_stride", "10", "--time_stride", "10", "--labels", "a,b,c",
        "--problem_type", "multi_label_classification",
    )
    assert result.returncode == 0, result.stderr
    files = {path.name for path in (tmp_path / "imagenet_ast").iterdir()}
    assert files == {"config.json", "model.safetensors", "preprocessor_config.json"}
    model = ASTForAudioClassification.from_pretrained(tmp_path / "imagenet_ast")
    assert model.config.patch_grid == (12, 101) and model.config.problem_type == "multi_label_classification"
    expected = ast_from_imagenet(
        tmp_path / "deit_small.pth",
        ASTConfig(id2label={0: "a", 1: "b", 2: "c"}, problem_type="multi_label_classification"),
        seed=0,
    )
    for key, value in expected.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key

    status = adapt_pretrained_main(
        [str(tmp_path / "imagenet_ast"), str(tmp_path / "esc"), "--max_length", "512", "--num_labels", "50",
         "--frequency_stride", "16", "--time_stride", "16", "--problem_type", "single_label_classification"]
    )
    assert status == 0
    adapted = ASTForAudioClassification.from_pretrained(tmp_path / "esc")
    assert adapted.config.patch_grid == (8, 32) and adapted.config.num_labels == 50
    assert json.loads((tmp_path / "esc" / "preprocessor_config.json").read_text())["max_length"] == 512


def test_cli_failure_leaves_nothing(tmp_path: Path) -> None:
    source = small_timm()
    source["blocks.0.attn.qkv.weight"] = torch.zeros(10, 128)
    save_file(source, tmp_path / "broken.safetensors")
    result = _run_cli(IMAGENET_CLI, tmp_path / "broken.safetensors", tmp_path / "out", "--num_labels", "2")
    assert result.returncode == 1
    assert "blocks.0.attn.qkv.weight: expected (384, 128), got (10, 128)" in result.stderr
    assert not (tmp_path / "out").exists()
    assert [path.name for path in tmp_path.iterdir()] == ["broken.safetensors"]


def test_save_ast_from_imagenet_refuses_to_overwrite(tmp_path: Path) -> None:
    """Only with overwrite, and only an output of this package: a user's file is never deleted."""
    save_ast_from_imagenet(small_timm(), tmp_path / "out", ASTConfig(max_length=64))
    with pytest.raises(ValueError, match="not empty"):
        save_ast_from_imagenet(small_timm(), tmp_path / "out", ASTConfig(max_length=128))
    save_ast_from_imagenet(small_timm(), tmp_path / "out", ASTConfig(max_length=128), overwrite=True)
    assert ASTModel.from_pretrained(tmp_path / "out").config.max_length == 128
    (tmp_path / "out" / "keep.txt").write_text("x")
    with pytest.raises(ValueError, match=r"it holds keep\.txt, which no model directory"):
        save_ast_from_imagenet(small_timm(), tmp_path / "out", ASTConfig(max_length=128), overwrite=True)
    assert (tmp_path / "out" / "keep.txt").read_text() == "x"
