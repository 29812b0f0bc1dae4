"""mmengine parts that write their files atomically: checkpoints and ``--out`` dumps.

mmengine's ``CheckpointHook`` writes ``epoch_N.pth`` in place, deletes the oldest checkpoint
(``max_keep_ckpts``) *before* saving the new one, and then rewrites ``last_checkpoint``. A
process killed while saving therefore leaves a truncated ``epoch_N.pth`` with
``last_checkpoint`` pointing at the previous file, which was already deleted: nothing to
resume from. :class:`AtomicCheckpointHook` saves to a unique temp file, renames it into place,
rewrites ``last_checkpoint`` atomically, and only then deletes the outdated checkpoint. A kill
at any moment leaves ``last_checkpoint`` naming a complete file.

``tools/train.py`` uses it in place of ``CheckpointHook`` (same options); ``tools/test.py
--out`` uses :class:`AtomicDumpResults` in place of mmengine's ``DumpResults``.
"""
from __future__ import annotations

import os
import os.path as osp

from mmengine.dist import is_main_process
from mmengine.evaluator import DumpResults
from mmengine.fileio import LocalBackend, dump
from mmengine.hooks import CheckpointHook
from mmengine.logging import print_log
from mmengine.registry import HOOKS, METRICS

from .fileio import atomic_write


@HOOKS.register_module()
class AtomicCheckpointHook(CheckpointHook):
    """``CheckpointHook`` that never leaves a partial checkpoint under the final name, and
    deletes outdated checkpoints only after the new one is complete.

    Other backends than the local file system keep mmengine's behaviour.
    """

    def _save_checkpoint_with_step(self, runner, step, meta) -> None:
        if not isinstance(self.file_backend, LocalBackend):
            return super()._save_checkpoint_with_step(runner, step, meta)
        outdated = None
        if self.max_keep_ckpts > 0 and not (self.keep_ckpt_ids
                                            and self.keep_ckpt_ids[-1] == step):
            if len(self.keep_ckpt_ids) == self.max_keep_ckpts:
                outdated = self.keep_ckpt_ids.popleft()
            self.keep_ckpt_ids.append(step)
            runner.message_hub.update_info('keep_ckpt_ids', list(self.keep_ckpt_ids))
        filename = self.filename_tmpl.format(step)
        self.last_ckpt = osp.join(self.out_dir, filename)
        runner.message_hub.update_info('last_ckpt', self.last_ckpt)
        if not is_main_process():  # runner.save_checkpoint is master-only
            return
        with atomic_write(self.last_ckpt) as tmp:
            runner.save_checkpoint(
                self.out_dir, osp.basename(tmp), self.file_client_args,
                save_optimizer=self.save_optimizer,
                save_param_scheduler=self.save_param_scheduler, meta=meta,
                by_epoch=self.by_epoch, backend_args=self.backend_args, **self.args)
        with atomic_write(osp.join(runner.work_dir, 'last_checkpoint')) as tmp:
            with open(tmp, 'w') as f:
                f.write(self.last_ckpt)
        if outdated is not None:
            old = osp.join(self.out_dir, self.filename_tmpl.format(outdated))
            if osp.isfile(old):
                os.remove(old)


@METRICS.register_module()
class AtomicDumpResults(DumpResults):
    """mmengine's ``DumpResults`` writing the pickle through a temp file and a rename."""

    def compute_metrics(self, results: list) -> dict:
        with atomic_write(self.out_file_path) as tmp:
            dump(results, tmp, file_format='pkl')
        print_log(f'Results has been saved to {self.out_file_path}.', logger='current')
        return {}
