"""Checkpoints: round trip, and one clear CheckpointError for every way a checkpoint can be wrong."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from ov3d_ros.core.checkpoint import (
    METADATA_FILE,
    SCHEMA_VERSION,
    WEIGHTS_FILE,
    CheckpointError,
    CheckpointMetadata,
    TemplateMismatchWarning,
    TextSpace,
    TextSpaceMismatchError,
    check_text_space,
    file_sha256,
    load_checkpoint,
    read_metadata,
    save_checkpoint,
)
from ov3d_ros.core.network import StudentConfig, StudentNet, UNetConfig, set_conv_algorithm, to_sparse_tensor

SPACE = TextSpace("test-space", 24, ("{}",))


def tiny_config(width: int = 8, semantic_dim: int = 24) -> StudentConfig:
    return StudentConfig(
        backbone=UNetConfig(channels=(width, 2 * width), blocks=(1, 1)), semantic_dim=semantic_dim, head_hidden=16
    )


def tiny_model(seed: int = 0, **kwargs) -> StudentNet:
    torch.manual_seed(seed)
    model = StudentNet(tiny_config(**kwargs))
    with torch.no_grad():  # non-default BatchNorm statistics, so a lost buffer would show
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm1d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 1.5)
    return set_conv_algorithm(model.eval(), "cpu")


def metadata_for(model: StudentNet, **kwargs) -> CheckpointMetadata:
    defaults = dict(
        architecture=model.config, text_space=SPACE, training_data={"scenes": ["unit-test"]}, metrics={"miou": 1.5}
    )
    return CheckpointMetadata(**{**defaults, **kwargs})


class Encoder:
    def __init__(self, encoder_id: str, dim: int, templates=("{}",)) -> None:
        self.encoder_id, self.dim, self.templates = encoder_id, dim, tuple(templates)

    def encode(self, texts):  # never called: only the text space is compared
        raise AssertionError


@pytest.fixture
def saved(tmp_path):
    model = tiny_model()
    directory = save_checkpoint(tmp_path / "ckpt", model, metadata_for(model))
    return model, directory


def _forward(model: StudentNet) -> tuple[torch.Tensor, torch.Tensor]:
    coords = torch.from_numpy(np.random.default_rng(0).integers(0, 12, size=(300, 3))).unique(dim=0)
    feats = torch.from_numpy(np.random.default_rng(1).normal(size=(len(coords), 4)).astype(np.float32))
    with torch.inference_mode():
        return model(to_sparse_tensor(coords, feats))


def test_round_trip_restores_weights_buffers_and_metadata(saved):
    model, directory = saved
    assert sorted(p.name for p in directory.iterdir()) == [METADATA_FILE, WEIGHTS_FILE]  # no temporaries left
    loaded, meta = load_checkpoint(directory)
    assert not loaded.training
    for (name, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), name
    for a, b in zip(_forward(model), _forward(loaded)):
        assert torch.equal(a, b)
    assert meta.architecture == model.config and meta.text_space == SPACE
    assert meta.training_data == {"scenes": ["unit-test"]} and meta.metrics == {"miou": 1.5}
    assert meta.trained is True and meta.voxel_size == 0.02 and meta.input_features == "rgb_height"
    assert meta.created  # filled in on save
    data = json.loads((directory / METADATA_FILE).read_text())
    assert data["schema_version"] == SCHEMA_VERSION and data["weights_sha256"] == file_sha256(directory / WEIGHTS_FILE)
    # either file path names the same checkpoint
    assert read_metadata(directory / WEIGHTS_FILE).architecture == model.config
    assert oct((directory / WEIGHTS_FILE).stat().st_mode & 0o777) == oct(0o666 & ~_umask())


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def test_overwrite_replaces_both_files(saved):
    _, directory = saved
    other = tiny_model(seed=5)
    save_checkpoint(directory, other, metadata_for(other, metrics={"miou": 2.0}))
    loaded, meta = load_checkpoint(directory)
    assert meta.metrics == {"miou": 2.0}
    assert torch.equal(next(iter(loaded.state_dict().values())), next(iter(other.state_dict().values())))


def test_missing_paths_and_files(saved, tmp_path):
    _, directory = saved
    with pytest.raises(CheckpointError, match="no checkpoint at"):
        load_checkpoint(tmp_path / "nowhere")
    (directory / WEIGHTS_FILE).unlink()
    with pytest.raises(CheckpointError, match=f"{WEIGHTS_FILE} is missing"):
        load_checkpoint(directory)
    (directory / METADATA_FILE).unlink()
    with pytest.raises(CheckpointError, match=f"{METADATA_FILE} is missing"):
        load_checkpoint(directory)


def _edit_json(directory, **changes):
    path = directory / METADATA_FILE
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data))


def test_corrupt_or_invalid_json(saved):
    _, directory = saved
    good = (directory / METADATA_FILE).read_text()
    (directory / METADATA_FILE).write_text(good[: len(good) // 2])
    with pytest.raises(CheckpointError, match="not valid JSON"):
        load_checkpoint(directory)
    (directory / METADATA_FILE).write_text("[1, 2]")
    with pytest.raises(CheckpointError, match="expected a JSON object"):
        load_checkpoint(directory)
    (directory / METADATA_FILE).write_text(good)
    _edit_json(directory, schema_version=99)
    with pytest.raises(CheckpointError, match="schema version 99"):
        load_checkpoint(directory)
    (directory / METADATA_FILE).write_text(good)
    data = json.loads(good)
    del data["architecture"]
    (directory / METADATA_FILE).write_text(json.dumps(data))
    with pytest.raises(CheckpointError, match="missing keys \\['architecture'\\]"):
        load_checkpoint(directory)
    (directory / METADATA_FILE).write_text(good)
    _edit_json(directory, architecture={"backbone": {"channels": "wide"}})
    with pytest.raises(CheckpointError, match="malformed metadata"):
        load_checkpoint(directory)


def test_truncated_weights_are_caught_by_the_recorded_hash(saved):
    _, directory = saved
    weights = directory / WEIGHTS_FILE
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match=r"do not match model\.json"):
        load_checkpoint(directory)


def test_unparsable_weights_give_a_clear_error_even_with_a_matching_hash(saved):
    _, directory = saved
    weights = directory / WEIGHTS_FILE
    weights.write_bytes(weights.read_bytes()[:1000])
    _edit_json(directory, weights_sha256=file_sha256(weights))
    with pytest.raises(CheckpointError, match="not a readable safetensors file"):
        load_checkpoint(directory)


def test_tensors_that_do_not_fit_the_architecture(saved):
    _, directory = saved
    wider = tiny_config(width=12).to_dict()
    _edit_json(directory, architecture=wider)
    with pytest.raises(CheckpointError, match="tensor shapes do not match"):
        load_checkpoint(directory)
    deeper = StudentConfig(backbone=UNetConfig(channels=(8, 16, 32), blocks=(1, 1, 1)), semantic_dim=24, head_hidden=16)
    _edit_json(directory, architecture=deeper.to_dict())
    with pytest.raises(
        CheckpointError, match=r"tensors do not match the architecture in model\.json: missing backbone"
    ):
        load_checkpoint(directory)


def test_non_finite_weights_are_refused(tmp_path):
    model = tiny_model()
    with torch.no_grad():
        model.semantic_head.output_layer.weight[0, 0] = float("nan")
    directory = save_checkpoint(tmp_path / "nan", model, metadata_for(model))
    with pytest.raises(CheckpointError, match="non-finite values"):
        load_checkpoint(directory)


def test_inconsistent_metadata_is_refused_on_save_and_load(tmp_path, saved):
    model = tiny_model()
    with pytest.raises(CheckpointError, match="semantic head is 24-d but text encoder 'other' is 512-d"):
        save_checkpoint(tmp_path / "bad", model, metadata_for(model, text_space=TextSpace("other", 512)))
    with pytest.raises(CheckpointError, match="differs from the model's own"):
        save_checkpoint(tmp_path / "bad", model, metadata_for(model, architecture=tiny_config(width=4)))
    with pytest.raises(CheckpointError, match="unknown input feature set"):
        save_checkpoint(tmp_path / "bad", model, metadata_for(model, input_features="lidar_intensity"))
    with pytest.raises(CheckpointError, match="have 7 channels but the network takes 4"):
        save_checkpoint(tmp_path / "bad", model, metadata_for(model, input_features="rgb_height_normals"))
    _, directory = saved
    _edit_json(directory, text_encoder={"id": "test-space", "dim": 512})
    with pytest.raises(CheckpointError, match="semantic head is 24-d"):
        load_checkpoint(directory)


def test_text_space_check(saved):
    _, directory = saved
    meta = read_metadata(directory)
    check_text_space(meta, Encoder("test-space", 24))  # the recorded encoder: fine
    with pytest.raises(TextSpaceMismatchError, match="trained against text encoder 'test-space' \\(24-d\\)"):
        check_text_space(meta, Encoder("open_clip:ViT-B-32", 512))
    with pytest.raises(TextSpaceMismatchError, match="'minilm-l6-v2'"):
        check_text_space(meta, Encoder("minilm-l6-v2", 24))  # same width is not the same space
    with pytest.warns(TemplateMismatchWarning, match="prompt templates"):
        check_text_space(meta, Encoder("test-space", 24, templates=("a {} in a scene",)))


def test_calibrated_ggp_is_recorded_without_touching_the_weights_and_used_by_default(saved):
    from ov3d_ros.core.checkpoint import record_ggp
    from ov3d_ros.core.ggp import GGPConfig
    from ov3d_ros.core.segmenter import Segmenter, SegmenterConfig

    model, directory = saved
    assert read_metadata(directory).ggp is None and read_metadata(directory).ggp_config() is None
    weights_before = file_sha256(directory / WEIGHTS_FILE)
    record_ggp(directory, {"k": 12, "tau": 0.07, "iterations": 32, "calibration": {"rooms": ["scene_1000"]}})
    assert file_sha256(directory / WEIGHTS_FILE) == weights_before
    loaded, metadata = load_checkpoint(directory)  # the recorded hash still matches
    assert metadata.ggp_config() == GGPConfig(k=12, tau=0.07, iterations=32)
    # the format read back; a record from before coarse-to-fine pooling means plain GGP
    assert metadata.ggp_config().record() == {"k": 12, "tau": 0.07, "iterations": 32, "coarsen": 1, "centering": 0.0}
    assert metadata.ggp["calibration"]["rooms"] == ["scene_1000"]
    assert not list(directory.glob("*.tmp*"))

    encoder = Encoder("test-space", 24)
    by_default = Segmenter(loaded, metadata, encoder, SegmenterConfig(device="cpu"), allow_untrained=True)
    assert by_default.config.ggp == GGPConfig(k=12, tau=0.07, iterations=32)
    explicit = Segmenter(
        loaded, metadata, encoder, SegmenterConfig(device="cpu", ggp=GGPConfig(k=8)), allow_untrained=True
    )
    assert explicit.config.ggp == GGPConfig(k=8)  # a caller's own setting wins
    from ov3d_ros.node.parameters import NodeSettings

    node_ggp = NodeSettings.from_values({"ggp_iterations": 4}).ggp_setting(by_default.config.ggp)
    assert node_ggp == GGPConfig(k=12, tau=0.07, iterations=4)  # the rest stays calibrated
    plain = Segmenter(model, metadata_for(model), encoder, SegmenterConfig(device="cpu"), allow_untrained=True)
    assert plain.config.ggp == GGPConfig()  # no calibration: the library defaults


@pytest.mark.parametrize(
    "bad",
    [{"k": 16, "tau": 0.0, "iterations": 8}, {"k": 16, "iterations": 8}, "fast", {"k": 0, "tau": 0.1, "iterations": 1}],
)
def test_malformed_ggp_records_are_refused(saved, bad):
    from ov3d_ros.core.checkpoint import record_ggp

    _, directory = saved
    with pytest.raises(CheckpointError, match="ggp"):
        record_ggp(directory, bad)
    _edit_json(directory, ggp=bad)
    with pytest.raises(CheckpointError, match="ggp"):
        read_metadata(directory)


def test_a_packaged_model_loads_by_name(tmp_path, monkeypatch):
    from ov3d_ros.core.checkpoint import PACKAGED_MODELS, packaged_model_names, read_metadata, resolve_checkpoint

    assert {"default", "sim_only"} <= set(packaged_model_names())
    monkeypatch.chdir(tmp_path)  # nothing called sim_only here: the name means the packaged model
    assert resolve_checkpoint("sim_only") == PACKAGED_MODELS / "sim_only"
    assert read_metadata("sim_only").trained
    (tmp_path / "sim_only").mkdir()  # a folder of that name where the caller runs wins
    assert resolve_checkpoint("sim_only") == Path("sim_only")
    with pytest.raises(CheckpointError, match="packaged model"):
        read_metadata("no_such_model")
