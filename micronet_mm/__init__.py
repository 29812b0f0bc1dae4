"""MicroNet for OpenMMLab.

``import micronet_mm`` changes the process in one step, :func:`install` (idempotent; it never
removes or replaces anyone else's settings):

* torch: adds the guarded entries of :func:`micronet_mm.checkpoint.mmengine_safe_globals` to
  ``torch.serialization``'s safe globals (``add_safe_globals``), so that ``weights_only``
  loading reads what mmengine checkpoints hold (``HistoryBuffer``, numeric numpy data);
* mmengine: replaces ``CheckpointLoader.load_checkpoint`` by a wrapper that reads local files
  with :func:`micronet_mm.checkpoint.safe_load` and cleans what the other schemes return
  (``load_from``, ``resume``, ``init_cfg=Pretrained``, the toolboxes' ``init_model`` and
  inferencers);
* image decoders: ``OPENCV_IO_MAX_IMAGE_PIXELS`` is set to the image limit if unset, and PIL's
  ``Image.MAX_IMAGE_PIXELS`` raised to it if lower (:func:`micronet_mm.limits.apply_to_decoders`);
* mmpretrain: lists the classification configs in ``ModelHub`` as soon as
  ``mmpretrain.apis`` is imported (:mod:`micronet_mm.zoo`), so that
  ``mmpretrain.get_model('micronet-m0_8xb64_in1k')`` works. Until then it only adds one finder
  to ``sys.meta_path`` (``micronet_mm_post_import.py``).

Models register themselves in the toolboxes' registries on ``import micronet_mm.models``
(what the configs' ``custom_imports`` name), not here.
"""
from micronet_mm_post_import import when_imported

from .checkpoint import allow_mmengine_checkpoints
from .limits import apply_to_decoders
from .zoo import register_with_mmpretrain

__version__ = '0.1.0'


def install() -> None:
    """What ``import micronet_mm`` changes in torch, mmengine and mmpretrain (see the module);
    calling it again changes nothing more."""
    allow_mmengine_checkpoints()
    apply_to_decoders()
    when_imported('mmpretrain.apis.model', register_with_mmpretrain)


install()
