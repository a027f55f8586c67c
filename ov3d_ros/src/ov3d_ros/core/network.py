"""Sparse-convolution networks: the SparseUNet backbone, the robot's student, and their plumbing.

The backbone follows Pointcept's SpUNet (spconv 2.x): a submanifold stem, strided sparse convs
down, inverse convs up with skip concatenation, residual blocks at every level. The same class
serves the MPEC teacher (wide) and the student (narrow); only the widths differ.

CPU vs CUDA: spconv's implicit-GEMM kernels exist only on CUDA; on CPU tensors the Native
algorithm is required. Weights are stored in one layout (KRSC) whatever the algorithm, so
``set_conv_algorithm`` can switch a built model between devices without touching its weights.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import asdict, dataclass, field
from typing import TypeVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

with warnings.catch_warnings():
    # spconv 2.3 uses torch.cuda.amp decorators that torch deprecates; nothing for us to act on,
    # and the node / CLIs should not print eight FutureWarnings at start-up.
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"spconv\.")
    import spconv.pytorch as spconv
    from spconv.core import ConvAlgo

# spconv's modules ask torch.fx whether it is tracing on every forward; torch logs a one-off
# deprecation notice about that question. Not actionable here: keep it out of node logs.
logging.getLogger("torch.fx._symbolic_trace").setLevel(logging.ERROR)

AFFINITY_DIM = 128


# --------------------------------------------------------------------------------------- plumbing
ModuleT = TypeVar("ModuleT", bound=nn.Module)


def set_conv_algorithm(model: ModuleT, device: torch.device | str) -> ModuleT:
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
    spatial_multiple: int = 16,
) -> spconv.SparseConvTensor:
    """Voxel grid coordinates (V, 3) + features (V, C) -> SparseConvTensor.

    Coordinates are shifted per batch to start at 0; ``batch_index`` (V,) assigns voxels to scans.
    The spatial shape is rounded up to a multiple of ``spatial_multiple`` (>= 2**(levels - 1)):
    a stride-2 conv (kernel 2, no padding) over an odd extent has no output cell for the last
    row of voxels, and a one-voxel extent has no output at all (spconv raises on tiny clouds).
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
    extent = local.max(0).values + 1 if len(local) else torch.ones(3, dtype=torch.long, device=device)
    multiple = max(1, int(spatial_multiple))
    spatial_shape = (((extent + multiple - 1) // multiple) * multiple).tolist()
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
            blocks += [
                ResidualBlock(c[level - 1], c[level - 1], f"subm{level - 1}") for _ in range(config.decoder_blocks - 1)
            ]
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
    """Linear -> LayerNorm -> GELU -> [Linear to ``rank``] -> Linear: a per-voxel MLP into another
    embedding space.

    With ``rank`` set, the output is confined to a ``rank``-dimensional affine subspace (a linear
    bottleneck before the last layer). The semantic head uses this so that GGP can be run once
    per cloud on ``rank + 1`` channels instead of once per query (core.query.PooledLowRank).
    """

    def __init__(self, in_channels: int, hidden: int, out_channels: int, rank: int | None = None) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Linear(in_channels, hidden), nn.LayerNorm(hidden), nn.GELU()]
        if rank is not None:
            layers.append(nn.Linear(hidden, rank, bias=False))
        layers.append(nn.Linear(rank if rank is not None else hidden, out_channels))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def hidden(self, x: torch.Tensor) -> torch.Tensor:
        """Everything but the last Linear: ``forward(x) == output_layer(hidden(x))``."""
        for layer in self.net[:-1]:
            x = layer(x)
        return x

    @property
    def output_layer(self) -> nn.Linear:
        layer = self.net[-1]
        assert isinstance(layer, nn.Linear)
        return layer


def compact_embedding(hidden: torch.Tensor, layer: nn.Linear) -> torch.Tensor:
    """Unit rows with the same pairwise cosines as ``normalize(layer(hidden))``, in fewer dims.

    With u = [h, 1] and M = [weight | bias], layer(h) = M u, and every inner product of outputs is
    u_i^T G u_j with G = M^T M ((H+1) x (H+1)). Writing G = L L^T (eigendecomposition), the rows
    y = u L have exactly those inner products, so normalize(y) has exactly the cosines of the
    128-d output. GGP's affinity weights use only these cosines, and their cost scales with the
    width, so the narrower exact form (at most ``head_hidden + 1`` dims instead of 128) makes them
    cheaper at no change in the weights. In ``ov3d-bench`` they are part of the
    ``process.ggp_graph`` stage of ``end_to_end_stages_s``. Inference only (detached from autograd).
    """
    with torch.autocast(hidden.device.type, enabled=False):  # cosines in full precision
        return _compact_embedding(hidden.float(), layer)


def _compact_embedding(hidden: torch.Tensor, layer: nn.Linear) -> torch.Tensor:
    weight = layer.weight.detach().double()
    bias = layer.bias.detach().double() if layer.bias is not None else weight.new_zeros(weight.shape[0])
    augmented = torch.cat([weight, bias[:, None]], dim=1)  # (out, H + 1)
    if augmented.shape[1] >= augmented.shape[0]:  # no narrower form: use the output itself
        return F.normalize(layer(hidden).detach().float(), dim=1)
    values, vectors = torch.linalg.eigh(augmented.T @ augmented)
    factor = (vectors * values.clamp(min=0.0).sqrt()).to(hidden.dtype)  # G = factor @ factor.T
    return F.normalize(hidden @ factor[:-1] + factor[-1], dim=1)


# --------------------------------------------------------------------------------------- student
@dataclass
class StudentConfig:
    """Everything needed to rebuild the student; stored in checkpoint metadata."""

    # Widths: the CPU budget (1 s end to end for 100k points on 2 cores) is mostly this network,
    # so the widths were chosen by timing the forward pass (backbone + heads) of candidate widths
    # on the real 100k-point ScanNet cloud; ``ov3d-bench`` reports the network's share as the
    # ``process.network`` stage of ``end_to_end_stages_s``. The cost sits in the first levels:
    # a scan is a thin surface, so the first stride merges few voxels and level 1's width is paid
    # on most of the cloud, while deeper levels hold few voxels and are cheap. Hence narrow early
    # levels (16, 24) and one more level rather than wider ones: the default's 5 levels (cells 16
    # voxels wide at the bottom) cost about what the 4-level (16, 24, 48, 64) costs and far less
    # than (16, 32, 64, 128), and depth buys context.
    backbone: UNetConfig = field(
        default_factory=lambda: UNetConfig(channels=(16, 24, 32, 48, 64), blocks=(1, 1, 1, 1, 1))
    )
    semantic_dim: int = 384  # the text encoder's embedding width (384 MiniLM, 512/768 CLIP)
    affinity_dim: int = AFFINITY_DIM
    head_hidden: int = 64  # narrow: the heads run on every voxel (see core.query.LowRankSemantic)
    # Rank of the semantic output (a linear bottleneck; None = full, head_hidden). 24 keeps GGP
    # a once-per-cloud cost (25 channels) while a rank-24 subspace of MiniLM space still tells
    # apart nearly every word of an indoor vocabulary by nearest text; rank 16 loses noticeably
    # more words, and a higher rank gains little for a wider pooled field.
    semantic_rank: int | None = 24

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> StudentConfig:
        data = dict(data)
        backbone = UNetConfig(**data.pop("backbone"))
        data.setdefault("semantic_rank", None)  # configs written before the field: full-rank heads
        return cls(backbone=backbone, **data)


class StudentNet(nn.Module):
    """The robot's network: a narrow SparseUNet with a semantic and an affinity head."""

    def __init__(self, config: StudentConfig) -> None:
        super().__init__()
        self.config = config
        self.backbone = SparseUNet(config.backbone)
        width = self.backbone.out_channels
        self.semantic_head = ProjectionHead(width, config.head_hidden, config.semantic_dim, rank=config.semantic_rank)
        self.affinity_head = ProjectionHead(width, config.head_hidden, config.affinity_dim)

    def forward(self, x: spconv.SparseConvTensor, semantic: bool = True) -> tuple[torch.Tensor | None, torch.Tensor]:
        """-> semantic (V, semantic_dim) in text space (unnormalised), affinity (V, 128) unit vectors.

        ``semantic=False`` skips the semantic head (returns None for it): when a cloud brings its
        own semantic features, only the affinities are needed.
        """
        feats = self.backbone(x)
        semantic_out = self.semantic_head(feats) if semantic else None
        affinity = F.normalize(self.affinity_head(feats).float(), dim=1)
        return semantic_out, affinity

    def forward_factored(
        self, x: spconv.SparseConvTensor, semantic: bool = True
    ) -> tuple[torch.Tensor | None, torch.Tensor]:
        """-> semantic code (V, semantic_rank or head_hidden), affinity (V, m <= head_hidden + 1)
        unit vectors with exactly the pairwise cosines of the 128-d affinity output (see
        :func:`compact_embedding`) -- all GGP needs, in fewer dims and so at a lower cost.

        semantic = ``semantic_head.output_layer(hidden)``. Inference keeps the hidden form: the
        last layer is linear, so text logits can be taken in the narrow hidden space
        (core.query.LowRankSemantic) and the (V, 384) output -- the most expensive tensor of the
        whole forward pass on CPU -- is never materialised.
        """
        feats = self.backbone(x)
        hidden = self.semantic_head.hidden(feats) if semantic else None
        affinity = compact_embedding(self.affinity_head.hidden(feats), self.affinity_head.output_layer)
        return hidden, affinity
