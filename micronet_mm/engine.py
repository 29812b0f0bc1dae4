"""Multi-process training on CPU-only machines (torchrun + gloo).

mmengine 0.10.7 assumes a GPU per process under ``--launcher pytorch``: ``init_dist`` calls
``torch.cuda.set_device`` and the model is wrapped in DDP with ``device_ids=[local_rank]``; both
fail without CUDA. When no GPU is visible, :func:`setup_cpu_distributed` starts the gloo process
group itself (the Runner then skips ``init_dist``) and selects a DDP wrapper without device ids.
"""
from __future__ import annotations

import torch
import torch.distributed as dist
from mmengine.model import MMDistributedDataParallel
from mmengine.registry import MODEL_WRAPPERS


@MODEL_WRAPPERS.register_module(force=True)
class CPUDistributedDataParallel(MMDistributedDataParallel):
    """``MMDistributedDataParallel`` for CPU modules: ``device_ids`` must be None there."""

    def __init__(self, module, device_ids=None, **kwargs) -> None:
        super().__init__(module=module, device_ids=None, **kwargs)


def setup_cpu_distributed(cfg) -> bool:
    """Prepare ``cfg`` and the process group for ``--launcher pytorch`` without CUDA.

    Returns:
        True if the CPU path was taken (False with a GPU or without a launcher).
    """
    if cfg.get('launcher', 'none') == 'none' or torch.cuda.is_available():
        return False
    if cfg.launcher != 'pytorch':
        raise ValueError(f'launcher {cfg.launcher!r} needs GPUs; on CPU use --launcher pytorch')
    cfg.setdefault('env_cfg', {}).setdefault('dist_cfg', {})['backend'] = 'gloo'
    cfg.model_wrapper_cfg = dict(type='CPUDistributedDataParallel', broadcast_buffers=False,
                                 find_unused_parameters=cfg.get('find_unused_parameters', False))
    if not dist.is_initialized():
        dist.init_process_group(backend='gloo')  # rank / world size from torchrun's env
    return True
