"""Deploy mode: rewrite a trained MicroNet into an equivalent model with fewer, faster operators.

The conversion runs after the weights are loaded (as mmpretrain's RepVGG / MobileOne
``switch_to_deploy``) and changes no output beyond float rounding. Each rewrite was measured on
a 2-core x86 CPU, one thread, batch 1 (docs/deploy.md):

* BatchNorm is folded into the convolution or FC layer before it.
* A Micro-Factorized depthwise convolution (kx1 + BN, then 1xk + BN) becomes ONE kxk depthwise
  convolution whose kernel is the outer product of the two factors. oneDNN spends ~100 µs per
  depthwise call whatever its size, so one kxk call costs half of two kx1/1xk calls although it
  has k/2 times the multiply-adds. The first BN's bias meets the 1xk convolution's zero padding,
  so the bias of the merged convolution is a per-column map ``(1, C, 1, W_out)``, exact at the
  borders (:class:`MergedDepthwise`).
* A group-adaptive 1x1 convolution runs as one batched matrix product over its groups
  (``baddbmm``) in PyTorch: 2-5x faster than ``conv2d`` with groups, which splits the call per
  group. For ONNX Runtime it stays a grouped ``Conv`` (``backend='onnxruntime'``).
* A channel shuffle becomes one ``index_select`` with a precomputed permutation, and
  consecutive shuffles are composed into one (the C block's last two, the lite combination's
  two): 6-20 µs instead of 16-26 µs per view-transpose-copy.
* Dynamic Shift-Max computes its fusions with explicit multiply-adds and one ``maximum``
  (``K`` fusions of ``J`` shifts), the shifted copy by ``index_select``: no stacked
  ``(K, J, N, C, H, W)`` intermediate, no advanced indexing (:class:`FastShiftMax`).
* ``backend='pytorch'``, the default, has standard operators only (any exporter takes it).
  ``backend='native'`` with the C++ operators built (:mod:`micronet_mm.ops.fused_shift_max`,
  ``tools/setup_env.sh``): the stem and every stage of Micro-Blocks (a classifier's whole
  backbone) are ONE
  ``micronet::program`` call each (:class:`~.rewrites.native_block.NativeProgram`, the fused
  blocks of the OpenVINO backend, docs/deploy.md); every
  other Dynamic Shift-Max (the pose head's) is ONE ``micronet::shift_max_dynamic`` call,
  hyper-function included (:class:`FusedShiftMax`), 0.3x the time of :class:`FastShiftMax` over
  M2's layers. ``backends.native.per_layer()`` keeps the per-layer form everywhere.
* The classifier head folds its two BatchNorm1d into the FC layers and drops the dropout.
  With ``backend='openvino'``, and ``'native'`` where the operators are built, it then runs as
  two native programs (pool + fc1, fc2), whose matrix-vector products read their weights
  faster than OpenVINO's MLAS FC or ``addmm`` (:mod:`.rewrites.cls_head` says what it
  measured).

``backend='onnxruntime'`` (what ``tools/deployment/export_onnx.py --deploy`` exports) differs
where ONNX Runtime's CPU kernels differ, each measured (docs/deploy.md):

* grouped 1x1 convolutions stay grouped ``Conv`` (a batched ``MatMul`` was 4% slower overall);
* a Micro-Factorized depthwise pair without channel multipliers stays kx1 + 1xk
  (:class:`FactorizedDepthwise`, BN folded, no bias map): ORT's NCHWc depthwise kernel runs the
  two faster than one kxk plus the map ``Add``; merged pairs add a full ``(1, C, H, W)`` bias
  map, which ORT adds 2-4x faster than it broadcasts a ``(1, C, 1, W)`` one;
* the shuffle before a block's depthwise convolution is moved past it and past the conjugated
  Shift-Max after it, and composed with the next shuffle (one ``Gather`` per block fewer);
* every (convolution, Dynamic Shift-Max) pair is prescaled (:meth:`FastShiftMax.prescale`) so
  that the hard sigmoid is an ONNX ``HardSigmoid`` that ORT fuses into fc2's ``Gemm``;
* the coefficient tensor is reshaped once with a constant shape and cut by one ``Split`` (no
  ``Gather``/``Squeeze`` per coefficient, no ``Shape`` subgraph with a dynamic batch).

Dense-task heads: the MR-ASPP head's Micro-Factorized pointwise convolutions get their BN
folded and their shuffle as one permutation; the pose head's Micro-Blocks convert as the
backbone's. A :class:`SpatialAttention` (around each pose-head activation, and once in MR-ASPP)
keeps its form: its logit's conv + BN is folded and its Shift-Max converted, but a slot
``SpatialAttention(Shift-Max)`` is neither prescaled nor moved past a shuffle (exact, one rewrite
fewer there).

Use :func:`switch_to_deploy` on a classifier, a backbone, or any model that contains MicroNet
parts (detectors, segmentors and pose models included): it rewrites every part it knows, in
place, and returns the model.

``backend='openvino'`` (``export_onnx.py --deploy --backend openvino``) compiles the stem and
every stage of Micro-Blocks into ONE native ``micronet.Program`` node each
(:mod:`.rewrites.native_block`, the layer program of ``micronet_mm/csrc/program.h``: convolutions
with BN folded, Shift-Max with its hyper-function, residuals, every shuffle a table of plane
indices); what has no program layer (the pose head's blocks with spatial attention, MR-ASPP)
takes the ONNX Runtime forms with each Shift-Max one native ``micronet.ShiftMax`` node. The ONNX
export then merges each chain of ``Program`` nodes into one (:mod:`.rewrites.program_chain`, a
rewrite of the exported graph: a classifier is one node).

``backend='ncnn'`` and ``backend='mnn'`` (``export_onnx.py --deploy --backend ncnn|mnn``)
give one form of standard operators on 4-D tensors only, what pnnx converts to ncnn and MNN
runs (:mod:`.backends.edge`, :mod:`.rewrites.four_d`): every shuffle and Shift-Max shift a
reshape with a transpose or circular rolls (channel shuffles and rolls when traced with
TorchScript), the hyper-functions on ``(N, C, 1, 1)`` maps, the stem's shuffle folded into a
dense 1xk convolution, the depthwise pairs kept as two convolutions, the spatial attention's
softmax as global pooling.

Layout: :mod:`.common` (BN folding, channel permutations); one module per rewrite under
:mod:`.rewrites` (``pointwise``, ``depthwise``, ``stem``, ``shift_max``, ``shuffles``,
``prescale``, ``cls_head``, ``native_shift_max``, ``native_block``, ``output_permutation``,
``program_chain``, ``four_d``;
``leaves`` says which form each part takes); one module per backend under :mod:`.backends`
(``pytorch``, ``native``, ``onnxruntime``, ``openvino``, ``edge``), each a ``convert(module)`` listed
in :data:`BACKENDS`; :mod:`.convert` holds the entry points. Imports go one way: this package
imports :mod:`micronet_mm.models` and :mod:`micronet_mm.ops`, never the reverse
(``tests/test_imports.py``), so a model has no ``switch_to_deploy`` method of its own; call
:func:`switch_to_deploy` on it.
"""
from .backends import BACKENDS
from .common import ChannelPermute, fold_bn, fold_conv_bn
from .convert import convert_backbone, switch_to_deploy
from .rewrites.cls_head import convert_cls_head
from .rewrites.depthwise import FactorizedDepthwise, MergedDepthwise
from .rewrites.pointwise import FusedPointwise
from .rewrites.shift_max import FastShiftMax, FusedShiftMax
from .rewrites.stem import MergedStem

__all__ = ['BACKENDS', 'ChannelPermute', 'FactorizedDepthwise', 'FastShiftMax', 'FusedPointwise',
           'FusedShiftMax', 'MergedDepthwise', 'MergedStem', 'convert_backbone',
           'convert_cls_head', 'fold_bn', 'fold_conv_bn', 'switch_to_deploy']
