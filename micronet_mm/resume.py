"""Bit-identical resume: a run killed at any point and resumed with ``--resume`` ends with the
same weights as a run that was never interrupted (same config and seed).

What mmengine 0.10.7 restores by itself: weights, optimizer, LR schedulers, the message hub
and the epoch/iteration counters; the sampler's shuffle is a function of ``seed + epoch``.
What it does not, and what decides the next step anyway:

1. **The main process's random state** (torch, numpy, python ``random``): dropout, random
   batch augmentations. :class:`RNGStateHook` stores it in every checkpoint and puts it back
   before the resumed training starts. Only training steps may consume it: building a
   data-loader iterator (torch draws its base seed there) and the validation loop run in
   :func:`rng_fork`, so the state saved after step *n* is the state step *n + 1* starts from,
   whatever happened in between.
2. **The data workers' random state** (random flips, crops...). It lives in worker processes,
   continues across epochs with ``persistent_workers=True`` and is not in any checkpoint.
   :class:`ResumableSampler` instead gives every sample of an epoch its own seed, a function of
   (seed, rank, epoch, position in the epoch), and :class:`SeededDataset` runs the sample's
   pipeline under that seed. Augmentations no longer depend on which worker loads a sample,
   on the number of workers or on the history of a worker.
3. **The position inside an epoch.** mmengine's ``EpochBasedTrainLoop`` restarts a resumed
   epoch from its first batch. :class:`ResumableEpochBasedTrainLoop` skips the batches the
   checkpoint had already trained: in the sampler (plain batching) or by loading and dropping
   them (other batch samplers, e.g. mmdet's ``AspectRatioBatchSampler``); thanks to 2 both give
   the same remaining batches.

:func:`prepare_resumable` switches a config to these parts (``tools/train.py`` calls it), and
to :class:`~micronet_mm.hooks.AtomicCheckpointHook`, so that a kill while a checkpoint is
written leaves the previous one in place. It applies to epoch-based configs with mmengine's
``DefaultSampler`` (all our configs but the iteration-based segmentation ones, which keep
mmengine's own resume: it replays the data loader, and worker seeds are as in mmengine).
"""
from __future__ import annotations

import contextlib
import logging
import random
from collections.abc import Iterator

import numpy as np
import torch
from mmengine.dataset import DefaultSampler
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.registry import DATA_SAMPLERS, DATASETS, HOOKS, LOOPS
from mmengine.runner import EpochBasedTrainLoop
from torch.utils.data import BatchSampler

from . import hooks  # noqa: F401  (registers AtomicCheckpointHook)


def rng_states(*, cuda: bool = True) -> dict:
    """The global random states of python, numpy and torch (and CUDA), as plain data and
    tensors (loadable with ``weights_only=True``)."""
    _, keys, pos, has_gauss, cached = np.random.get_state()
    states = dict(python=random.getstate(), torch=torch.get_rng_state(),
                  numpy=dict(keys=torch.from_numpy(keys.astype(np.int64)), pos=int(pos),
                             has_gauss=int(has_gauss), cached_gaussian=float(cached)))
    if cuda and torch.cuda.is_available() and torch.cuda.is_initialized():
        states['cuda'] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict) -> None:
    """Restore what :func:`rng_states` returned."""
    version, internal, gauss = states['python']
    random.setstate((version, tuple(internal), gauss))
    n = states['numpy']
    np.random.set_state(('MT19937', n['keys'].numpy().astype(np.uint32), n['pos'],
                         n['has_gauss'], n['cached_gaussian']))
    torch.set_rng_state(states['torch'])
    if states.get('cuda') and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states['cuda'])


@contextlib.contextmanager
def rng_fork(seed: int | None = None) -> Iterator[None]:
    """Run the block with the CPU random states of python, numpy and torch saved and put
    back afterwards; with ``seed``, seed all three with it first."""
    saved = rng_states(cuda=False)
    if seed is not None:
        random.seed(seed)
        np.random.seed(seed)
        torch.random.default_generator.manual_seed(seed)
    try:
        yield
    finally:
        set_rng_states(saved)


def sample_seed(seed: int, rank: int, epoch: int, position: int) -> int:
    """The seed of the sample at ``position`` of ``epoch`` on ``rank`` (a 32-bit integer)."""
    return int(np.random.SeedSequence([seed, rank, epoch, position]).generate_state(1)[0])


class SeededIndex(int):
    """A dataset index that carries the seed its sample is to be loaded with."""

    seed: int

    def __new__(cls, index: int, seed: int) -> SeededIndex:
        obj = super().__new__(cls, index)
        obj.seed = seed
        return obj

    def __reduce__(self):  # sent to the data workers
        return SeededIndex, (int(self), self.seed)


@DATA_SAMPLERS.register_module()
class ResumableSampler(DefaultSampler):
    """mmengine's ``DefaultSampler`` (same order) yielding :class:`SeededIndex` items, and
    able to start an epoch at a given position (:meth:`skip_next`)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._skip = 0

    def skip_next(self, n: int) -> None:
        """Let the next iteration start at position ``n`` of the epoch (once)."""
        self._skip = n

    def __iter__(self) -> Iterator[SeededIndex]:
        skip, self._skip = self._skip, 0
        for position, index in enumerate(super().__iter__()):
            if position >= skip:
                yield SeededIndex(index, sample_seed(self.seed, self.rank, self.epoch,
                                                     position))


@DATASETS.register_module()
class SeededDataset:
    """Wraps a dataset: the item for a :class:`SeededIndex` is made under its seed.

    Everything else (``metainfo``, ``get_data_info``, attributes) is the wrapped dataset's.

    Args:
        dataset: the dataset, or its config.
    """

    def __init__(self, dataset) -> None:
        self.dataset = DATASETS.build(dataset) if isinstance(dataset, dict) else dataset

    @property
    def metainfo(self) -> dict:
        return self.dataset.metainfo

    def full_init(self) -> None:
        if hasattr(self.dataset, 'full_init'):
            self.dataset.full_init()

    def get_data_info(self, idx: int) -> dict:
        return self.dataset.get_data_info(int(idx))

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, idx):
        seed = getattr(idx, 'seed', None)
        if seed is None:
            return self.dataset[idx]
        with rng_fork(seed):
            return self.dataset[int(idx)]

    def __getattr__(self, name: str):
        if name == 'dataset' or name.startswith('__'):  # not set yet (unpickling)
            raise AttributeError(name)
        return getattr(self.dataset, name)


@LOOPS.register_module()
class ResumableEpochBasedTrainLoop(EpochBasedTrainLoop):
    """``EpochBasedTrainLoop`` that resumes inside an epoch where the checkpoint was saved,
    and keeps iterator creation and validation from consuming the training random state."""

    def run(self) -> torch.nn.Module:
        self.runner.call_hook('before_train')
        while self._epoch < self._max_epochs and not self.stop_training:
            self.run_epoch()
            self._decide_current_val_interval()
            if (self.runner.val_loop is not None and self._epoch >= self.val_begin
                    and (self._epoch % self.val_interval == 0
                         or self._epoch == self._max_epochs)):
                with rng_fork():
                    self.runner.val_loop.run()
        self.runner.call_hook('after_train')
        return self.runner.model

    def run_epoch(self) -> None:
        self.runner.call_hook('before_train_epoch')
        self.runner.model.train()
        done = self._iter - self._epoch * len(self.dataloader)  # > 0 when resumed mid-epoch
        in_sampler = (done > 0 and isinstance(self.dataloader.sampler, ResumableSampler)
                      and type(self.dataloader.batch_sampler) is BatchSampler)
        if in_sampler:
            self.dataloader.sampler.skip_next(done * self.dataloader.batch_size)
        with rng_fork():
            batches = iter(self.dataloader)
            for _ in range(done if done > 0 and not in_sampler else 0):
                next(batches)  # trained before the checkpoint: load and drop
        for idx, data_batch in enumerate(batches, start=max(done, 0)):
            self.run_iter(idx, data_batch)
        self.runner.call_hook('after_train_epoch')
        self._epoch += 1


@HOOKS.register_module()
class RNGStateHook(Hook):
    """Stores the main process's random states in every checkpoint (``'rng_state'``) and
    restores them when training resumes from one (not for ``load_from``)."""

    priority = 'LOWEST'  # restore after every other before_train hook

    def __init__(self) -> None:
        self._loaded: dict | None = None

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        checkpoint['rng_state'] = rng_states()

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        self._loaded = checkpoint.get('rng_state')

    def before_train(self, runner) -> None:
        if runner.iter == 0:  # a new run (or load_from): the seed decides
            return
        if self._loaded is None:
            print_log('the resumed checkpoint holds no random state; the run goes on, but '
                      'will not match an uninterrupted one', logger='current', level=logging.WARNING)
            return
        set_rng_states(self._loaded)
        self._loaded = None


def prepare_resumable(cfg) -> bool:
    """Switch ``cfg`` to the parts above and to atomic checkpoints (in place).

    Args:
        cfg: a merged training config.

    Returns:
        Whether the exact mid-epoch resume applies (an epoch-based loop with mmengine's
        ``DefaultSampler``); the random states and atomic checkpoints are used in any case.
    """
    checkpoint = (cfg.get('default_hooks') or {}).get('checkpoint')
    if checkpoint is not None and checkpoint.get('type') in ('CheckpointHook',
                                                             'mmengine.CheckpointHook'):
        checkpoint['type'] = 'AtomicCheckpointHook'
    hooks_cfg = list(cfg.get('custom_hooks') or [])
    if not any(h.get('type') == 'RNGStateHook' for h in hooks_cfg):
        cfg.custom_hooks = hooks_cfg + [dict(type='RNGStateHook')]
    train_cfg, loader = cfg.get('train_cfg'), cfg.get('train_dataloader')
    if train_cfg is None or loader is None:
        return False
    loop = train_cfg.get('type', 'EpochBasedTrainLoop' if train_cfg.get('by_epoch') else None)
    sampler = loader.get('sampler') or {}
    if loop != 'EpochBasedTrainLoop' or sampler.get('type') != 'DefaultSampler':
        return loop == 'ResumableEpochBasedTrainLoop'
    train_cfg.pop('by_epoch', None)
    train_cfg['type'] = 'ResumableEpochBasedTrainLoop'
    sampler['type'] = 'ResumableSampler'
    loader['dataset'] = dict(type='SeededDataset', dataset=loader['dataset'])
    return True
