"""Text encoders: the packaged MiniLM offline, open_clip from a local weights file, the cache."""

from __future__ import annotations

import json
import socket
from unittest import mock

import numpy as np
import pytest
import torch

from ov3d_ros.core.text import (
    MINILM_DIM,
    MINILM_ID,
    CachedTextEncoder,
    MiniLMEncoder,
    OpenClipEncoder,
    TextEncoder,
    TextEncoderError,
    load_text_encoder,
)

TINY_CLIP = "ov3d-test-tiny-clip"
TINY_CLIP_CONFIG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 64, "head_width": 32, "patch_size": 16},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}


def _no_network(*args, **kwargs):
    raise AssertionError(f"network access attempted: {args}")


@pytest.fixture(scope="module")
def minilm() -> MiniLMEncoder:
    # Any socket connection during loading or encoding fails the test: the model must be local.
    with mock.patch.object(socket.socket, "connect", _no_network):
        encoder = MiniLMEncoder()
        encoder.encode(["warm-up"])
    return encoder


def test_minilm_loads_offline_and_ranks_couch_closest_to_sofa(minilm):
    names = ["sofa", "chair", "table", "bed", "toilet", "lamp", "refrigerator", "window"]
    with mock.patch.object(socket.socket, "connect", _no_network):
        couch = minilm.encode(["couch"])[0]
        others = minilm.encode(names)
    assert isinstance(minilm, TextEncoder)
    assert minilm.encoder_id == MINILM_ID and minilm.dim == MINILM_DIM == others.shape[1]
    assert others.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(others, axis=1), 1.0, atol=1e-5)
    similarity = others @ couch
    assert names[int(np.argmax(similarity))] == "sofa"


def test_minilm_accepts_non_ascii_text(minilm):
    out = minilm.encode(["café table", "Stuhl", "椅子"])
    assert out.shape == (3, MINILM_DIM) and np.isfinite(out).all()
    assert not np.allclose(out[0], out[1])


def test_minilm_template_ensemble_is_normalized_and_differs_from_bare(minilm):
    ensemble = minilm.with_templates(("{}", "a {} in a scene"))
    assert minilm.templates == ("{}",)
    bare, mixed = minilm.encode(["chair"])[0], ensemble.encode(["chair"])[0]
    assert abs(np.linalg.norm(mixed) - 1.0) < 1e-5
    assert 0.8 < float(bare @ mixed) < 0.9999  # same concept, not the same vector
    assert minilm.encode([]).shape == (0, MINILM_DIM)


def test_bad_templates_are_rejected():
    with pytest.raises(TextEncoderError, match="exactly once"):
        MiniLMEncoder(templates=("a photo",))
    with pytest.raises(TextEncoderError, match="at least one"):
        MiniLMEncoder(templates=())


# ------------------------------------------------------------------------------------ open_clip
@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory):
    """A randomly initialised tiny open_clip model and its weights, written by the test."""
    import open_clip
    from safetensors.torch import save_file

    folder = tmp_path_factory.mktemp("clip")
    config_path = folder / f"{TINY_CLIP}.json"
    config_path.write_text(json.dumps(TINY_CLIP_CONFIG))
    open_clip.add_model_config(config_path)
    torch.manual_seed(0)
    model = open_clip.create_model(TINY_CLIP).eval()
    weights = folder / "tiny.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(weights))
    return model, weights, config_path


def test_open_clip_encoder_loads_local_weights_and_ensembles_templates(tiny_clip):
    import open_clip

    model, weights, config_path = tiny_clip
    templates = ("a {} in a scene", "a photo of a {}")
    encoder = OpenClipEncoder(TINY_CLIP, weights, templates=templates, config_path=config_path)
    assert encoder.encoder_id == f"open_clip:{TINY_CLIP}" and encoder.dim == 32
    out = encoder.encode(["chair", "sofa"])
    assert out.shape == (2, 32) and out.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)

    # the same numbers from the model the test built: the weights file was really used
    tokenizer = open_clip.get_tokenizer(TINY_CLIP)
    with torch.no_grad():
        expected = []
        for name in ("chair", "sofa"):
            rows = torch.nn.functional.normalize(
                model.encode_text(tokenizer([t.format(name) for t in templates])), dim=1
            )
            expected.append(torch.nn.functional.normalize(rows.mean(0), dim=0).numpy())
    np.testing.assert_allclose(out, np.stack(expected), atol=1e-5)


def test_open_clip_missing_or_wrong_weights_give_clear_errors(tiny_clip, tmp_path):
    _, weights, config_path = tiny_clip
    with pytest.raises(TextEncoderError, match="weights file not found"):
        OpenClipEncoder(TINY_CLIP, tmp_path / "absent.pt", config_path=config_path)
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\x00" * 64)
    with pytest.raises(TextEncoderError, match="cannot load open_clip"):
        OpenClipEncoder(TINY_CLIP, garbage, config_path=config_path)
    with pytest.raises(TextEncoderError, match="no architecture"):
        OpenClipEncoder("no-such-model", weights)


def test_factory_specs(tiny_clip):
    _, weights, config_path = tiny_clip
    with pytest.raises(TextEncoderError, match="unknown text encoder"):
        load_text_encoder("word2vec")
    with pytest.raises(TextEncoderError, match="needs a local weights file"):
        load_text_encoder(f"open_clip:{TINY_CLIP}")
    encoder = load_text_encoder(f"open_clip:{TINY_CLIP}", weights_path=weights, config_path=config_path)
    assert isinstance(encoder, CachedTextEncoder) and encoder.encoder_id == f"open_clip:{TINY_CLIP}"


# ---------------------------------------------------------------------------------------- cache
class CountingEncoder:
    """A deterministic encoder that records what it was asked (the cache is under test here)."""

    encoder_id = "counting"
    dim = 8
    templates = ("{}",)

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def encode(self, texts):
        self.calls.append(list(texts))
        rows = np.stack([np.random.default_rng(abs(hash(t)) % 2**32).normal(size=self.dim) for t in texts])
        return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def test_cache_encodes_each_string_once_and_returns_identical_rows():
    inner = CountingEncoder()
    cache = CachedTextEncoder(inner)
    first = cache.encode(["chair", "table", "chair"])
    second = cache.encode(["table", "chair"])
    assert inner.calls == [["chair", "table"]]  # duplicates within a call encoded once
    np.testing.assert_array_equal(first[[1, 0]], second)
    assert cache.hits == 3 and cache.misses == 2
    assert cache.encoder_id == "counting" and cache.dim == 8


def test_cache_evicts_least_recently_used():
    inner = CountingEncoder()
    cache = CachedTextEncoder(inner, max_entries=2)
    cache.encode(["a"])
    cache.encode(["b"])
    cache.encode(["a"])  # a is now the most recent
    cache.encode(["c"])  # evicts b
    cache.encode(["a"])
    assert inner.calls == [["a"], ["b"], ["c"]]
    cache.encode(["b"])
    assert inner.calls[-1] == ["b"]


# ------------------------------------------------------------------------- stored embeddings
def test_stored_table_serves_the_encoders_own_rows_and_names_missing_texts(minilm, tmp_path, monkeypatch):
    from ov3d_ros.core.text import TEXT_TABLE_ENV, TableTextEncoder, save_embedding_table

    names = ["chair", "table", "a wooden chair next to the window"]
    path = save_embedding_table(tmp_path / "t.npz", minilm, {("{}",): names, ("a {} in a scene",): ["sofa"]})
    monkeypatch.setenv(TEXT_TABLE_ENV, str(path))
    table = load_text_encoder(MINILM_ID)  # no model is loaded: the table answers
    assert isinstance(table.encoder, TableTextEncoder) and table.dim == MINILM_DIM
    # the encoder's own rows (a batch's padding may move the last bits, hence the tolerance)
    np.testing.assert_allclose(table.encode(["table", "chair"]), minilm.encode(["table", "chair"]), atol=1e-6)
    other = load_text_encoder(MINILM_ID, templates=("a {} in a scene",))
    np.testing.assert_allclose(
        other.encode(["sofa"]), minilm.with_templates(("a {} in a scene",)).encode(["sofa"]), atol=1e-6
    )
    with pytest.raises(TextEncoderError, match="'lamp'"):
        table.encode(["chair", "lamp"])
    with pytest.raises(TextEncoderError, match="no embeddings for templates"):
        load_text_encoder(MINILM_ID, templates=("a photo of a {}",))
    with pytest.raises(TextEncoderError, match="holds embeddings of 'minilm-l6-v2'"):
        load_text_encoder("open_clip:ViT-B-32")
    monkeypatch.setenv(TEXT_TABLE_ENV, str(tmp_path / "absent.npz"))
    with pytest.raises(TextEncoderError, match="not found"):
        load_text_encoder(MINILM_ID)
