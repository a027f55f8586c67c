"""Student network: the factored inference forward equals the plain forward."""

from __future__ import annotations

import numpy as np
import torch

from ov3d_ros.core.network import (
    StudentConfig,
    StudentNet,
    UNetConfig,
    compact_embedding,
    set_conv_algorithm,
    to_sparse_tensor,
)


def _input(count: int = 400, seed: int = 0):
    rng = np.random.default_rng(seed)
    coords = torch.from_numpy(rng.integers(0, 16, size=(count, 3))).unique(dim=0)
    return to_sparse_tensor(coords, torch.from_numpy(rng.normal(size=(len(coords), 4)).astype(np.float32)))


def test_compact_embedding_keeps_every_cosine():
    torch.manual_seed(0)
    layer = torch.nn.Linear(64, 128)
    hidden = torch.randn(300, 64)
    full = torch.nn.functional.normalize(layer(hidden).detach(), dim=1)
    compact = compact_embedding(hidden, layer)
    assert compact.shape == (300, 65)
    np.testing.assert_allclose((compact @ compact.T).numpy(), (full @ full.T).numpy(), atol=1e-5)
    # no narrower form exists when the output is not wider than the input: the output itself
    narrow = torch.nn.Linear(8, 4)
    np.testing.assert_allclose(
        compact_embedding(hidden[:, :8], narrow).numpy(),
        torch.nn.functional.normalize(narrow(hidden[:, :8]).detach(), dim=1).numpy(),
        atol=1e-6,
    )


def test_factored_forward_matches_forward():
    torch.manual_seed(0)
    config = StudentConfig(backbone=UNetConfig(channels=(8, 16), blocks=(1, 1)), semantic_dim=48, semantic_rank=6)
    model = set_conv_algorithm(StudentNet(config).eval(), "cpu")
    x = _input()
    with torch.inference_mode():
        semantic, affinity = model(x)
        code, compact = model.forward_factored(_input())
        skipped, _ = model.forward_factored(_input(), semantic=False)
        rebuilt = model.semantic_head.output_layer(code)
    assert code.shape == (len(semantic), 6) and skipped is None
    np.testing.assert_allclose(rebuilt.numpy(), semantic.numpy(), atol=1e-5)
    np.testing.assert_allclose((compact @ compact.T).numpy(), (affinity @ affinity.T).numpy(), atol=1e-5)
    # the rank bottleneck really bounds the semantic output's rank
    centered = semantic - semantic.mean(dim=0)
    assert torch.linalg.matrix_rank(centered, atol=1e-4) <= 6


def test_config_round_trip_and_older_configs():
    config = StudentConfig()
    assert StudentConfig.from_dict(config.to_dict()) == config
    older = config.to_dict()
    del older["semantic_rank"]  # written before the field existed: a full-rank head
    assert StudentConfig.from_dict(older).semantic_rank is None
