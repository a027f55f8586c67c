"""Sparse-convolution networks: the SparseUNet backbone, the robot's student, and their plumbing.

The backbone follows Pointcept's SpUNet (spconv 2.x): a submanifold stem, strided sparse convs
down, inverse convs up with skip concatenation, residual blocks at every level. The same class
serves the MPEC teacher (wide) and the student (narrow); only the widths differ.

CPU vs CUDA: spconv's implicit-GEMM kernels exist only on CUDA; on CPU tensors the Native
algorithm is required. Weights are stored in one layout (KRSC) whatever the algorithm, so
``set_conv_algorithm`` can switch a built model between devices without touching its weights.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import spconv.pytorch as spconv
import torch
import torch.nn.functional as F
from spconv.core import ConvAlgo
from torch import nn

AFFINITY_DIM = 128


# --------------------------------------------------------------------------------------- plumbing
def set_conv_algorithm(model: nn.Module, device: torch.device | str) -> nn.Module:
    """Native on CPU (the only one spconv has there), implicit GEMM on CUDA."""
    algo = ConvAlgo.MaskImplicitGemm if torch.device(device).type == "cuda" else ConvAlgo.Native
    for module in model.modules():
        if isinstance(module, spconv.conv.SparseConvolution):
            module.algo = algo
    return model


def to_sparse_tensor(
    coords: torch.Tensor | np.ndarray,
    features: torch.Tensor,
    batch_index: torch.Tensor | np.ndarray | None = None,
) -> spconv.SparseConvTensor:
    """Voxel grid coordinates (V, 3) + features (V, C) -> SparseConvTensor.

    Coordinates are shifted per batch to start at 0; ``batch_index`` (V,) assigns voxels to scans.
    """
    device = features.device
    coords = torch.as_tensor(coords, device=device).long()
    if batch_index is None:
        batch_index = torch.zeros(len(coords), dtype=torch.long, device=device)
    batch_index = torch.as_tensor(batch_index, device=device).long()
    batch_size = int(batch_index.max().item()) + 1 if len(batch_index) else 1
    # shift each scan to the origin so the spatial shape stays as small as the scan
    mins = torch.full((batch_size, 3), torch.iinfo(torch.int64).max, device=device, dtype=torch.long)
    mins = mins.scatter_reduce(0, batch_index[:, None].expand(-1, 3), coords, reduce="amin")
    local = coords - mins[batch_index]
    spatial_shape = (local.max(0).values + 1).tolist() if len(local) else [1, 1, 1]
    indices = torch.cat([batch_index[:, None], local], dim=1).int().contiguous()
    return spconv.SparseConvTensor(features.contiguous(), indices, spatial_shape, batch_size)


# ---------------------------------------------------------------------------------------- blocks
class ResidualBlock(spconv.SparseModule):
    """Two 3x3x3 submanifold convs with a (projected) identity shortcut."""

    def __init__(self, in_channels: int, out_channels: int, indice_key: str) -> None:
        super().__init__()
        self.shortcut = (
            nn.Identity()
            if in_channels == out_channels
            else spconv.SparseSequential(nn.Linear(in_channels, out_channels, bias=False), nn.BatchNorm1d(out_channels))
        )
        self.conv = spconv.SparseSequential(
            spconv.SubMConv3d(in_channels, out_channels, 3, padding=1, bias=False, indice_key=indice_key),
            nn.BatchNorm1d(out_channels),
            nn.ReLU(inplace=True),
            spconv.SubMConv3d(out_channels, out_channels, 3, padding=1, bias=False, indice_key=indice_key),
            nn.BatchNorm1d(out_channels),
        )

    def forward(self, x: spconv.SparseConvTensor) -> spconv.SparseConvTensor:
        identity = x.features if isinstance(self.shortcut, nn.Identity) else self.shortcut(x.features)
        out = self.conv(x)
        return out.replace_feature(F.relu(out.features + identity))


@dataclass
class UNetConfig:
    """Widths and depths of a SparseUNet. ``channels[i]`` is the width at stride 2**i."""

    in_channels: int = 4
    channels: tuple[int, ...] = (32, 64, 128, 256)
    blocks: tuple[int, ...] = (1, 1, 1, 1)
    decoder_blocks: int = 1

    def __post_init__(self) -> None:
        self.channels = tuple(int(c) for c in self.channels)
        self.blocks = tuple(int(b) for b in self.blocks)
        if len(self.channels) != len(self.blocks) or len(self.channels) < 2:
            raise ValueError(f"channels {self.channels} and blocks {self.blocks} must have the same length >= 2")


class SparseUNet(nn.Module):
    """Encoder-decoder on a sparse voxel grid; returns per-voxel features of width ``channels[0]``."""

    def __init__(self, config: UNetConfig) -> None:
        super().__init__()
        self.config = config
        c = config.channels
        self.stem = spconv.SparseSequential(
            spconv.SubMConv3d(config.in_channels, c[0], 3, padding=1, bias=False, indice_key="subm0"),
            nn.BatchNorm1d(c[0]),
            nn.ReLU(inplace=True),
        )
        self.down = nn.ModuleList()
        self.encoders = nn.ModuleList()
        for level, width in enumerate(c):
            if level > 0:
                self.down.append(
                    spconv.SparseSequential(
                        spconv.SparseConv3d(c[level - 1], width, 2, stride=2, bias=False, indice_key=f"down{level}"),
                        nn.BatchNorm1d(width),
                        nn.ReLU(inplace=True),
                    )
                )
            self.encoders.append(
                spconv.SparseSequential(
                    *[ResidualBlock(width, width, f"subm{level}") for _ in range(config.blocks[level])]
                )
            )
        self.up = nn.ModuleList()
        self.decoders = nn.ModuleList()
        for level in range(len(c) - 1, 0, -1):
            self.up.append(
                spconv.SparseSequential(
                    spconv.SparseInverseConv3d(c[level], c[level - 1], 2, bias=False, indice_key=f"down{level}"),
                    nn.BatchNorm1d(c[level - 1]),
                    nn.ReLU(inplace=True),
                )
            )
            blocks = [ResidualBlock(2 * c[level - 1], c[level - 1], f"subm{level - 1}")]
            blocks += [ResidualBlock(c[level - 1], c[level - 1], f"subm{level - 1}") for _ in range(config.decoder_blocks - 1)]
            self.decoders.append(spconv.SparseSequential(*blocks))
        self.out_channels = c[0]

    def forward(self, x: spconv.SparseConvTensor) -> torch.Tensor:
        x = self.encoders[0](self.stem(x))
        skips = [x]
        for down, encoder in zip(self.down, self.encoders[1:]):
            x = encoder(down(x))
            skips.append(x)
        for up, decoder, skip in zip(self.up, self.decoders, reversed(skips[:-1])):
            x = up(x)  # inverse conv restores exactly the voxels of ``skip``, in the same order
            x = decoder(x.replace_feature(torch.cat([x.features, skip.features], dim=1)))
        return x.features


class ProjectionHead(nn.Module):
    """Linear -> LayerNorm -> GELU -> Linear: a per-voxel MLP into another embedding space."""

    def __init__(self, in_channels: int, hidden: int, out_channels: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(in_channels, hidden), nn.LayerNorm(hidden), nn.GELU(), nn.Linear(hidden, out_channels)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


# --------------------------------------------------------------------------------------- student
@dataclass
class StudentConfig:
    """Everything needed to rebuild the student; stored in checkpoint metadata."""

    backbone: UNetConfig = field(default_factory=lambda: UNetConfig(channels=(16, 32, 64, 128), blocks=(1, 1, 1, 1)))
    semantic_dim: int = 384  # the text encoder's embedding width (384 MiniLM, 512/768 CLIP)
    affinity_dim: int = AFFINITY_DIM
    head_hidden: int = 128

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "StudentConfig":
        data = dict(data)
        backbone = UNetConfig(**data.pop("backbone"))
        return cls(backbone=backbone, **data)


class StudentNet(nn.Module):
    """The robot's network: a narrow SparseUNet with a semantic and an affinity head."""

    def __init__(self, config: StudentConfig) -> None:
        super().__init__()
        self.config = config
        self.backbone = SparseUNet(config.backbone)
        width = self.backbone.out_channels
        self.semantic_head = ProjectionHead(width, config.head_hidden, config.semantic_dim)
        self.affinity_head = ProjectionHead(width, config.head_hidden, config.affinity_dim)

    def forward(self, x: spconv.SparseConvTensor) -> tuple[torch.Tensor, torch.Tensor]:
        """-> semantic (V, semantic_dim) in text space (unnormalised), affinity (V, 128) unit vectors."""
        feats = self.backbone(x)
        semantic = self.semantic_head(feats)
        affinity = F.normalize(self.affinity_head(feats).float(), dim=1)
        return semantic, affinity
