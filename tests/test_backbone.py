"""The MicroNet backbone: exact parameter counts, MAdds, shapes, freezing and argument checks."""
import pytest
import torch
from torch import nn

from conftest import ARCHS, randomize_bn
from micronet_mm.analysis import count_complexity
from micronet_mm.models import MicroNet, MicroNetClsHead
from micronet_mm.ops import DynamicShiftMax

# Reference figures (official code, 1000 classes, classifier included) and the
# MAdds at 224x224: conv+linear, and with Dynamic Shift-Max (J*K per output element).
REFERENCE = {
    'm0': dict(params=1_019_590, mid=640, conv_linear=3.45e6, total=4.05e6),
    'm1': dict(params=1_777_587, mid=960, conv_linear=5.31e6, total=6.12e6),
    'm2': dict(params=2_393_876, mid=1024, conv_linear=10.34e6, total=12.74e6),
    'm3': dict(params=2_622_960, mid=1024, conv_linear=18.24e6, total=20.81e6),
}


class Classifier(nn.Module):
    def __init__(self, arch, **kwargs):
        super().__init__()
        self.backbone = MicroNet(arch, **kwargs)
        self.head = MicroNetClsHead(1000, self.backbone.stage_channels[-1],
                                    REFERENCE[arch]['mid'])

    def forward(self, x):
        return self.head(self.backbone(x))


@pytest.mark.parametrize('arch', ARCHS)
def test_parameter_count_is_exact(arch):
    model = Classifier(arch)
    assert sum(p.numel() for p in model.parameters()) == REFERENCE[arch]['params']


@pytest.mark.parametrize('arch', ARCHS)
def test_madds_match_reference(arch):
    c = count_complexity(Classifier(arch), (3, 224, 224))
    ref = REFERENCE[arch]
    assert c.conv_linear_madds == pytest.approx(ref['conv_linear'], rel=0.005)
    assert c.madds == pytest.approx(ref['total'], rel=0.005)


EXPECTED_CHANNELS = {'m0': [8, 12, 32, 384], 'm1': [8, 16, 32, 576],
                     'm2': [12, 24, 64, 768], 'm3': [16, 24, 80, 864]}


@pytest.mark.parametrize('output_stride', [32, 16, 8])
@pytest.mark.parametrize('arch', ARCHS)
def test_output_shapes_per_stage(arch, output_stride):
    model = MicroNet(arch, out_indices=(0, 1, 2, 3), output_stride=output_stride).eval()
    outs = model(torch.randn(2, 3, 128, 160))
    assert len(outs) == 4
    for i, out in enumerate(outs):
        stride = min((4, 8, 16, 32)[i], output_stride)
        assert out.shape == (2, EXPECTED_CHANNELS[arch][i], 128 // stride, 160 // stride)
    assert model.out_channels == EXPECTED_CHANNELS[arch]


@pytest.mark.parametrize('arch', ARCHS)
def test_output_stride_keeps_weights_and_only_dilates(arch):
    """Same parameters in every output stride; stride-16 output = stride-32 field of view."""
    m32, m16 = MicroNet(arch), MicroNet(arch, output_stride=16)
    m16.load_state_dict(m32.state_dict())
    dilated = [m for m in m16.modules() if isinstance(m, nn.Conv2d) and max(m.dilation) > 1]
    assert dilated and all(max(m.stride) == 1 for m in dilated)


@pytest.mark.parametrize('size', [(97, 131), (33, 33), (224, 225)])
def test_input_not_multiple_of_32(size):
    out = MicroNet('m0', out_indices=(0, 3)).eval()(torch.randn(1, 3, *size))
    assert out[0].shape[-2:] == tuple(-(-s // 4) for s in size)
    assert out[1].shape[-2:] == tuple(-(-s // 32) for s in size)


@pytest.mark.parametrize('arch', ARCHS)
@pytest.mark.parametrize('frozen_stages', [-1, 0, 1, 2, 3, 4])
def test_frozen_stages(arch, frozen_stages):
    model = MicroNet(arch, frozen_stages=frozen_stages, out_indices=(3,))
    model.train()
    frozen = ([model.stem] if frozen_stages >= 0 else []) + list(model.stages[:max(frozen_stages, 0)])
    trainable = [m for m in [model.stem, *model.stages] if all(m is not f for f in frozen)]
    for module in frozen:
        assert all(not p.requires_grad for p in module.parameters())
        assert all(not m.training for m in module.modules())
    out = model(torch.randn(2, 3, 64, 64))[0]
    assert out.requires_grad == (frozen_stages < 4)  # 4: the whole backbone is frozen
    if out.requires_grad:
        out.sum().backward()
    for module in frozen:
        assert all(p.grad is None for p in module.parameters())
    for module in trainable:
        assert all(p.requires_grad for p in module.parameters())
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in module.parameters())
        assert all(m.training for m in module.modules())


def test_norm_eval_keeps_bn_statistics():
    model = MicroNet('m0', norm_eval=True)
    randomize_bn(model)
    model.train()
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    before = [bn.running_mean.clone() for bn in bns]
    model(torch.randn(2, 3, 64, 64))
    assert all(not bn.training for bn in bns)
    assert all(torch.equal(b, bn.running_mean) for b, bn in zip(before, bns))
    assert any(p.requires_grad for p in model.parameters())


@pytest.mark.parametrize('kwargs,match', [
    (dict(arch='m9'), r"arch='m9'.*legal values: \['m0', 'm1', 'm2', 'm3'"),
    (dict(out_indices=(4,)), r'out_indices entry=4 .*legal values: \[-4, -3, -2, -1, 0, 1, 2, 3\]'),
    (dict(frozen_stages=5), r'frozen_stages=5 .*legal values: \[-1, 0, 1, 2, 3, 4\]'),
    (dict(frozen_stages=-2), r'frozen_stages=-2'),
    (dict(output_stride=4), r'output_stride=4 .*legal values: \[8, 16, 32\]'),
])
def test_bad_arguments_raise_value_error_with_legal_values(kwargs, match):
    with pytest.raises(ValueError, match=match):
        MicroNet(**kwargs)


def test_act_cfg_switches_dynamic_relu_and_static():
    relu = MicroNet('m0', act_cfg=dict(num_shifts=1))
    assert all(m.num_shifts == 1 for m in relu.modules() if isinstance(m, DynamicShiftMax))
    static = MicroNet('m0', act_cfg=dict(dynamic=False))
    assert all(m.fc is None for m in static.modules() if isinstance(m, DynamicShiftMax))
    assert static(torch.randn(1, 3, 64, 64))[0].shape == (1, 384, 2, 2)


@pytest.mark.parametrize('arch', ARCHS)
def test_full_rank_partner_has_same_widths_and_dense_convs(arch):
    micro, full = MicroNet(arch, out_indices=(0, 1, 2, 3)), MicroNet(
        arch, out_indices=(0, 1, 2, 3), full_rank=True)
    assert full.stage_channels == micro.stage_channels
    convs = [m for m in full.modules() if isinstance(m, nn.Conv2d)]
    pointwise = [m for m in convs if m.kernel_size == (1, 1)]
    depthwise = [m for m in convs if m.kernel_size != (1, 1) and m is not full.stem.conv_k1
                 and m is not full.stem.conv_1k]
    assert all(m.groups == 1 for m in pointwise)
    assert all(m.kernel_size[0] == m.kernel_size[1] > 1 for m in depthwise)
    x = torch.randn(1, 3, 64, 64)
    assert [o.shape for o in full.eval()(x)] == [o.shape for o in micro.eval()(x)]


# The blocks with a residual, per architecture table: (1-based row of the table, block type).
# The reference rule (stride 1 and equal widths, whatever the block type) applied by hand to
# each table; README "Residuals" lists the same rows.
RESIDUAL_ROWS = {
    'm0': [], 'm1': [], 'm2': [(5, 'C')],
    'm3': [(3, 'A'), (5, 'C'), (8, 'C'), (10, 'C')],
    'v1-m0': [], 'v1-m1': [(5, 'C')],
    'v1-m2': [(3, 'A'), (5, 'C'), (8, 'C'), (10, 'C')],
    'v1-m3': [(3, 'B'), (4, 'C'), (6, 'C'), (8, 'C'), (10, 'C'), (12, 'C'), (13, 'C')],
    'pose-m0': [], 'pose-m1': [(9, 'C')], 'pose-m2': [(8, 'C'), (9, 'C')],
    'pose-m3': [(6, 'C'), (7, 'C'), (9, 'C'), (11, 'C'), (12, 'C'), (14, 'C')],
}
#: the same for the pose heads' block rows (upsampling rows not counted)
HEAD_RESIDUAL_ROWS = {'pose-m0': [], 'pose-m1': [], 'pose-m2': [], 'pose-m3': [(1, 'C')]}


def _residual_rows(blocks) -> list[tuple[int, str]]:
    kinds = {'MicroBlockA': 'A', 'MicroBlockB': 'B', 'MicroBlockC': 'C', 'ExpansionBlock': 'E'}
    return [(i + 1, kinds[type(b).__name__]) for i, b in enumerate(blocks) if b.use_residual]


@pytest.mark.parametrize('output_stride', [32, 16, 8])
@pytest.mark.parametrize('arch', sorted(RESIDUAL_ROWS))
def test_blocks_with_a_residual(arch, output_stride):
    """Exactly the table rows listed have a residual, at every output stride (a block whose
    stride becomes dilation keeps the table's rule), and each adds its input: the block's
    output changes by exactly its input when the residual is switched off."""
    from micronet_mm.models.backbones.micronet_archs import ARCH_SETTINGS
    model = MicroNet(arch, output_stride=output_stride).eval()
    blocks = [b for stage in model.stages for b in stage]
    assert len(blocks) == len(ARCH_SETTINGS[arch]['rows'])
    assert _residual_rows(blocks) == RESIDUAL_ROWS[arch]
    randomize_bn(model)
    x = model.stem(torch.randn(1, 3, 64, 64))
    with torch.no_grad():
        for block in blocks:
            y = block(x)
            if block.use_residual:
                block.use_residual = False
                torch.testing.assert_close(block(x), y - x)
                block.use_residual = True
            x = y


@pytest.mark.parametrize('arch', sorted(HEAD_RESIDUAL_ROWS))
def test_pose_head_blocks_with_a_residual(arch):
    from micronet_mm.models.heads.pose_head import build_head_layers
    in_channels = MicroNet(arch).stage_channels[2]
    layers, _ = build_head_layers(arch, in_channels)
    blocks = [m for m in layers if hasattr(m, 'use_residual')]
    assert _residual_rows(blocks) == HEAD_RESIDUAL_ROWS[arch]
