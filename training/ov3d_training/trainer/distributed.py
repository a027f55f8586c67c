"""Data parallelism on PyTorch's own engine: torchrun env -> process group, synchronised BatchNorm.

``torchrun --nproc_per_node G [--nnodes M ...] -m ov3d_training.cli mpec ...`` sets RANK,
WORLD_SIZE and LOCAL_RANK; :func:`init_distributed` then joins the group with NCCL on CUDA and
gloo on CPU. Without those variables everything runs in one process.

Same global batch => same training. A global batch of B scans split over W processes gives each
B / W scans; the gradient DDP averages is then the gradient of the mean per-scan loss, as in one
process -- *if* BatchNorm sees the whole global batch. Per-process BN would normalise with
statistics of B / W scans, so :func:`synchronize_batchnorm` swaps every BatchNorm for a
synchronised one: torch's ``SyncBatchNorm`` on CUDA (fused kernels), and on CPU -- where torch's
refuses to run -- :class:`AllReduceBatchNorm1d`, which all-reduces sums through an autograd-aware
all-reduce (backward = all-reduce of the gradients) so gradients flow across processes exactly
as they would through one batch.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def init_distributed(device: str = "auto") -> DistInfo:
    """Join the torchrun process group if launched by torchrun; choose this process's device."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("trainer.device is 'cuda' but no CUDA device is visible")
    if use_cuda:
        torch.cuda.set_device(local_rank % torch.cuda.device_count())
        chosen = torch.device("cuda", torch.cuda.current_device())
    else:
        chosen = torch.device("cpu")
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return DistInfo(rank, world_size, local_rank, chosen)


def shutdown_distributed(orderly: bool = True) -> None:
    """Leave the process group. ``orderly``: meet the other processes first -- a rank that tears
    its gloo connections down while a peer is still finishing (rank 0 plots after the last
    barrier) can abort it ("terminate called without an active exception", seen in CI). After an
    error pass False: a failed peer may never arrive at the barrier."""
    if dist.is_available() and dist.is_initialized():
        if orderly:
            dist.barrier()
        dist.destroy_process_group()


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def all_reduce_sum(values: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Sum a (small) tensor over processes, for logging; not part of the gradient."""
    if not (dist.is_available() and dist.is_initialized()):
        return values.clone()
    # NCCL reduces on the GPU; float64 keeps the sums exact enough for any run length
    reduced = values.to(device=device, dtype=torch.float64).clone()
    dist.all_reduce(reduced)
    return reduced.cpu()


def broadcast_object(obj, src: int = 0):
    if not (dist.is_available() and dist.is_initialized()):
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


class _AllReduceSum(torch.autograd.Function):
    """Sum over processes; the gradient of a sum that every process uses is the sum of theirs."""

    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:
        out = tensor.clone()
        dist.all_reduce(out)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        out = grad.clone()
        dist.all_reduce(out)
        return out


def differentiable_all_reduce(tensor: torch.Tensor) -> torch.Tensor:
    return _AllReduceSum.apply(tensor)


class AllReduceBatchNorm1d(nn.BatchNorm1d):
    """BatchNorm1d whose training statistics span all processes (CPU-capable SyncBatchNorm).

    Two all-reduces per call (mean, then centred second moment) rather than one of (sum, sum of
    squares): the one-pass variance loses digits when |mean| >> std, and the equivalence of one
    and several processes is tested to a tight tolerance.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        all_reduce = differentiable_all_reduce
        if x.dim() != 2:
            raise ValueError(f"AllReduceBatchNorm1d expects (N, C) features, got shape {tuple(x.shape)}")
        data = x if x.dtype == torch.float64 else x.float()  # fp16 under autocast: statistics in fp32
        count = all_reduce(torch.tensor([float(data.shape[0])], dtype=data.dtype, device=x.device))
        mean = all_reduce(data.sum(dim=0)) / count
        centered = data - mean
        var = all_reduce((centered * centered).sum(dim=0)) / count
        out = centered * torch.rsqrt(var + self.eps)
        if self.affine:
            out = out * self.weight + self.bias
        if self.track_running_stats:
            with torch.no_grad():
                n = float(count.item())
                momentum = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked + 1)
                self.running_mean.mul_(1 - momentum).add_(mean.detach(), alpha=momentum)
                unbiased = var.detach() * (n / max(n - 1.0, 1.0))
                self.running_var.mul_(1 - momentum).add_(unbiased, alpha=momentum)
                self.num_batches_tracked.add_(1)
        return out.to(x.dtype)


def synchronize_batchnorm(model: nn.Module, device: torch.device) -> nn.Module:
    """Replace every BatchNorm1d by a synchronised one (module doc); weights and stats are kept."""
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return _replace_batchnorm(model)


def _replace_batchnorm(module: nn.Module) -> nn.Module:
    if isinstance(module, nn.BatchNorm1d) and not isinstance(module, AllReduceBatchNorm1d):
        reference = next(iter([*module.parameters(), *module.buffers()]), None)
        synced = AllReduceBatchNorm1d(
            module.num_features,
            module.eps,
            module.momentum,
            module.affine,
            module.track_running_stats,
            device=None if reference is None else reference.device,
            dtype=None if reference is None or not reference.is_floating_point() else reference.dtype,
        )
        synced.load_state_dict(module.state_dict())
        synced.train(module.training)
        return synced
    for name, child in module.named_children():
        replaced = _replace_batchnorm(child)
        if replaced is not child:
            setattr(module, name, replaced)
    return module
