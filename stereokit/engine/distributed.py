"""The process group as torchrun sets it up: NCCL on CUDA, gloo on CPU; device picked at run time."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass

import torch
import torch.distributed as dist

from stereokit.errors import StereokitError


DETERMINISTIC_ENV = "STEREOKIT_DETERMINISTIC"  # an environment variable, so torchrun's workers see it too


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def resolve_device(name: str, local_rank: int = 0, local_world: int = 1, device_count: int | None = None) -> torch.device:
    """auto or cuda -> cuda:<local rank> when CUDA is there (auto: else cpu). An explicit cuda:N is
    the first GPU of this node's ranks: rank k of a multi-process run takes cuda:N+k (each rank its
    own GPU, never all on one); past the last GPU is refused."""
    if name == "auto":
        return torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise StereokitError(f"device '{name}': CUDA is not available on this machine; use --set device=cpu or auto.")
        index = local_rank if device.index is None else device.index + (local_rank if local_world > 1 else 0)
        count = torch.cuda.device_count() if device_count is None else device_count
        if index >= count:
            raise StereokitError(f"device '{name}': local rank {local_rank} of {local_world} would need cuda:{index}, "
                                 f"but this machine has {count} GPU(s); use fewer processes or device=cuda.")
        device = torch.device(f"cuda:{index}")
    return device


def configure_determinism(deterministic: bool, device: torch.device) -> None:
    """On CUDA, bitwise-repeatable kernels when asked (cuDNN's deterministic algorithms, no autotune,
    no TF32, torch's deterministic mode); off, cuDNN autotunes for speed. The CPU is deterministic
    either way (oneDNN's kernels are, for a fixed thread count)."""
    if device.type != "cuda":
        return
    torch.backends.cudnn.deterministic = deterministic
    torch.backends.cudnn.benchmark = not deterministic
    torch.backends.cuda.matmul.allow_tf32 = not deterministic
    torch.backends.cudnn.allow_tf32 = not deterministic
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(deterministic, warn_only=True)


def init_distributed(device_name: str) -> tuple[DistInfo, torch.device]:
    """Join the group torchrun describes (RANK, WORLD_SIZE, LOCAL_RANK); a plain run is rank 0 of 1.
    STEREOKIT_DETERMINISTIC=1 (train --deterministic) asks CUDA for repeatable kernels."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", str(world)))
    info = DistInfo(rank, world, local)
    device = resolve_device(device_name, local, local_world)
    configure_determinism(os.environ.get(DETERMINISTIC_ENV) == "1", device)
    if world > 1 and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return info, device


def shutdown_distributed() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def broadcast_flag(flag: bool, device: torch.device) -> bool:
    """True on every rank when it is true on any (so an interrupt on one rank stops them all)."""
    if not (dist.is_available() and dist.is_initialized()):
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def sync_buffers(module: torch.nn.Module) -> None:
    """Copy rank 0's buffers (BN running statistics, observer ranges) to every rank.

    DDP broadcasts buffers at the start of each forward, so after the last step every rank holds
    the statistics of its own last batch; evaluation and checkpoints must all see rank 0's.
    """
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        for buffer in module.buffers():
            dist.broadcast(buffer.data, src=0)


def launch_torchrun(argv: list[str], nproc: int) -> int:
    """Run this same command under torchrun's elastic agent with `nproc` processes on this node."""
    if nproc < 1:
        raise StereokitError(f"--nproc-per-node: {nproc} must be at least 1.")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
           "-m", "stereokit", *argv]
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    return subprocess.call(cmd, env=env)


def under_torchrun() -> bool:
    return "TORCHELASTIC_RUN_ID" in os.environ or "WORLD_SIZE" in os.environ
