"""The MPEC teacher: SparseUNet encoder + mask token + VL-adapter (+ optional point projection).

* encoder: :class:`ov3d_ros.core.network.SparseUNet` (SpUNet-style, widths configurable);
* mask token: a learnable vector that replaces the colour channels of masked voxels
  (``F = E((1 - G) P + G T)`` in the paper; only colour is hidden -- geometry stays, which is what
  makes the masked point findable in the other view);
* VL-adapter: a 2-layer MLP (:class:`ProjectionHead`) from encoder features into the frozen text
  encoder's space; the same module type as the student's semantic head, so distillation can
  start the student's head from it;
* point projection (optional, ``point_projection_dim``): an MLP in front of the point-to-entity
  contrast. The paper contrasts encoder features directly (the default, ``None``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from ov3d_ros.core.features import DEFAULT_FEATURES, feature_set
from ov3d_ros.core.network import ProjectionHead, SparseUNet, UNetConfig, to_sparse_tensor

from ..data.dataset import color_channels


@dataclass
class MPECModelConfig:
    channels: tuple[int, ...] = (32, 64, 128, 256)
    blocks: tuple[int, ...] = (2, 2, 2, 2)
    decoder_blocks: int = 2
    input_features: str = DEFAULT_FEATURES
    adapter_hidden: int = 512
    point_projection_dim: int | None = None
    text_encoder: str = "minilm-l6-v2"
    text_weights: str | None = None  # local weights file for open_clip text encoders
    text_templates: tuple[str, ...] | None = None  # None: the encoder's default
    e2t_bias_init: float = -5.0  # initial logit bias of the entity->text BCE (learnable)

    def backbone(self) -> UNetConfig:
        return UNetConfig(
            in_channels=feature_set(self.input_features).channels,
            channels=self.channels,
            blocks=self.blocks,
            decoder_blocks=self.decoder_blocks,
        )

    def to_dict(self) -> dict:
        return asdict(self)


def padded_sparse_tensor(coords: torch.Tensor, features: torch.Tensor, batch_index: torch.Tensor, levels: int):
    """:func:`to_sparse_tensor` with the grid rounded up to a multiple of the UNet's total stride.

    A stride-2 conv over an odd grid extent drops the voxels of the last row (spconv sizes its
    output ``floor((n - 2) / 2) + 1``), so with the grid sized to the data's own extent, border
    voxels vanish at the downsampling levels and a scan's features depend on which other scans
    share its batch. Rounding the extent up keeps every voxel at every level: a scan's features
    are then the same alone or batched (what the data-parallel equivalence relies on).
    """
    sparse = to_sparse_tensor(coords, features, batch_index)
    stride = 2 ** (levels - 1)
    sparse.spatial_shape = [-(-int(extent) // stride) * stride for extent in sparse.spatial_shape]
    return sparse


class MPECModel(nn.Module):
    """Per-voxel encoder features, text-space features and contrast features for MPEC."""

    def __init__(self, config: MPECModelConfig, text_dim: int) -> None:
        super().__init__()
        self.config = config
        self.text_dim = int(text_dim)
        self.backbone = SparseUNet(config.backbone())
        width = self.backbone.out_channels
        self.color = color_channels(config.input_features)
        self.mask_token = nn.Parameter(torch.zeros(self.color.stop - self.color.start))
        self.adapter = ProjectionHead(width, config.adapter_hidden, self.text_dim)
        self.point_projection = (
            ProjectionHead(width, max(width, config.point_projection_dim), config.point_projection_dim)
            if config.point_projection_dim
            else None
        )
        self.e2t_bias = nn.Parameter(torch.tensor(float(config.e2t_bias_init)))

    def apply_mask_token(self, features: torch.Tensor, voxel_masked: torch.Tensor) -> torch.Tensor:
        """Colour channels of masked voxels -> the learnable token; everything else untouched."""
        color = features[:, self.color]
        token = self.mask_token.to(features.dtype).expand_as(color)
        color = torch.where(voxel_masked[:, None], token, color)
        return torch.cat([features[:, : self.color.start], color, features[:, self.color.stop :]], dim=1)

    def encode(
        self,
        coords: torch.Tensor,
        features: torch.Tensor,
        batch_index: torch.Tensor,
        voxel_masked: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """(V, width) encoder features, rows in the order of the input voxels."""
        if voxel_masked is not None:
            features = self.apply_mask_token(features, voxel_masked)
        return self.backbone(padded_sparse_tensor(coords, features, batch_index, len(self.config.channels)))

    def contrast_features(self, encoded: torch.Tensor) -> torch.Tensor:
        return encoded if self.point_projection is None else self.point_projection(encoded)

    def text_features(self, encoded: torch.Tensor) -> torch.Tensor:
        """Encoder features -> the text encoder's space (unnormalised)."""
        return self.adapter(encoded)
