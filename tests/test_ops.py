"""Operators against the paper's equations, by direct loops and dense equivalents."""
import pytest
import torch
from torch import nn

from micronet_mm.ops import (ActSettings, BlockSpec, ChannelShuffle, DynamicShiftMax,
                             LiteCombination, MicroBlockA, MicroBlockB, MicroBlockC,
                             MicroFactorizedDepthwise, MicroFactorizedPointwise, MicroStem,
                             adaptive_groups)


def eq4_loop(x, a, groups, inner_shift):
    """Eq. 4 written out: y_i = max_k sum_j a^k_{i,j} x_{shift_j(i)}; a: (K, J, N, C)."""
    n, c, h, w = x.shape
    k_, j_ = a.shape[:2]
    per = c // groups
    y = torch.empty_like(x)
    for b in range(n):
        for i in range(c):
            g, ci = divmod(i, per)
            fusions = []
            for k in range(k_):
                total = torch.zeros(h, w)
                for j in range(j_):
                    src = ((g + j) % groups) * per + ((ci + j) % per if inner_shift else ci)
                    total = total + a[k, j, b, i] * x[b, src]
                fusions.append(total)
            y[b, i] = torch.stack(fusions).max(0).values
    return y


@pytest.mark.parametrize('inner_shift', [False, True])
@pytest.mark.parametrize('j,k', [(2, 2), (2, 1), (1, 2), (3, 2)])
def test_shift_max_matches_eq4_loop(j, k, inner_shift):
    dsm = DynamicShiftMax(12, groups=3, num_shifts=j, num_fusions=k, squeeze_channels=4,
                          init_a=(1.0, 0.5), init_b=(0.0, 0.5), inner_shift=inner_shift).eval()
    for p in dsm.parameters():
        nn.init.normal_(p, std=0.5)
    x = torch.randn(2, 12, 3, 4)
    a = dsm.coefficients(x)[..., 0, 0]  # (K, J, N, C)
    torch.testing.assert_close(dsm(x), eq4_loop(x, a, 3, inner_shift))
    assert a.shape == (k, j, 2, 12)


def test_shift_max_coefficients_follow_the_hyper_function():
    """a = (hsigmoid(FC(ReLU(FC(avgpool x)))) - 0.5) * 2 act_max + init, laid out [k][j][c]."""
    dsm = DynamicShiftMax(8, groups=2, squeeze_channels=4, act_max=2.0,
                          init_a=(1.0, 0.5), init_b=(0.0, 0.25))
    x = torch.randn(1, 8, 5, 5)
    s = dsm.fc(x.mean((2, 3)))
    expect = ((s - 0.5) * 4.0).view(2, 2, 8)  # (K, J, C)
    expect += torch.tensor([[1.0, 0.0], [0.5, 0.25]]).view(2, 2, 1)
    torch.testing.assert_close(dsm.coefficients(x)[:, :, 0, :, 0, 0], expect)


def test_j1_is_dynamic_relu():
    """J=1: each channel alone, y = max_k a^k(x) x (dynamic ReLU, paper §5.3)."""
    dsm = DynamicShiftMax(8, groups=4, num_shifts=1, num_fusions=2, squeeze_channels=4)
    x = torch.randn(3, 8, 4, 4)
    a = dsm.coefficients(x)[:, 0]  # (K, N, C, 1, 1)
    torch.testing.assert_close(dsm(x), torch.maximum(a[0] * x, a[1] * x))


def test_static_shift_max_ignores_the_input():
    dsm = DynamicShiftMax(8, groups=2, dynamic=False)
    assert dsm.fc is None and dsm.static_coef.requires_grad
    a1 = dsm.coefficients(torch.randn(1, 8, 2, 2))
    a2 = dsm.coefficients(torch.randn(1, 8, 2, 2) * 5)
    torch.testing.assert_close(a1, a2)
    # initial coefficients = the dynamic ReLU-like identity start: a^k_0 = init_a, a^k_1 = init_b
    torch.testing.assert_close(a1[:, :, 0, 0, 0, 0], torch.tensor([[1.0, 0.0], [0.0, 0.0]]))


def test_shift_max_rejects_bad_groups():
    with pytest.raises(ValueError, match='divisible'):
        DynamicShiftMax(10, groups=4)


def test_channel_shuffle_is_the_shufflenet_permutation():
    x = torch.arange(6.).view(1, 6, 1, 1)
    assert ChannelShuffle(2)(x).flatten().tolist() == [0, 3, 1, 4, 2, 5]


def test_micro_factorized_depthwise_is_a_rank1_kxk_depthwise():
    """kx1 then 1xk equals one kxk depthwise kernel P Q^T (BN in eval = per-channel affine)."""
    mf = MicroFactorizedDepthwise(4, 5).eval()
    for bn in (mf.bn1, mf.bn2):
        bn.weight.data.fill_(1), bn.bias.data.zero_()
    x = torch.randn(2, 4, 9, 11)
    kernel = mf.conv_k1.weight[:, :, :, 0].unsqueeze(-1) * mf.conv_1k.weight  # (4, 1, 5, 5)
    dense = nn.functional.conv2d(x, kernel, padding=2, groups=4)
    torch.testing.assert_close(mf(x), dense, atol=1e-5, rtol=1e-4)
    assert torch.linalg.matrix_rank(kernel[0, 0]) == 1


@pytest.mark.parametrize('stride,dilation', [(1, 1), (2, 1), (1, 2)])
def test_micro_factorized_depthwise_expansion_shapes(stride, dilation):
    mf = MicroFactorizedDepthwise(3, 3, stride=stride, dilation=dilation, expand=(2, 3))
    assert mf(torch.randn(1, 3, 15, 17)).shape == (1, 18, -(-15 // stride), -(-17 // stride))


def test_adaptive_groups_lowered_to_a_common_divisor():
    """sqrt(48) rounds to 7; 7, 6 and 5 fail to divide 48 or 20, so 4; nothing to divide: 7."""
    assert adaptive_groups(48, 1) == 7
    assert adaptive_groups(48, 1, divides=(48, 20)) == 4
    assert MicroFactorizedPointwise(48, 20, hidden=48).q.conv.groups == 4


def test_micro_factorized_pointwise_block_structure():
    """Fig. 2-left: C=18, R=2 -> G=3; W = P Φ Q^T has GxG blocks of rank 1 and every output
    connects to every input exactly once."""
    assert adaptive_groups(18, 2) == 3
    mf = MicroFactorizedPointwise(18, 18, hidden=9).eval()
    for bn in (mf.q.bn, mf.p.bn):
        bn.weight.data.fill_(1), bn.bias.data.zero_()
    assert mf.q.conv.groups == 3 and mf.p.conv.groups == 3
    w = mf(torch.eye(18).view(18, 18, 1, 1)).view(18, 18).T  # column i = W e_i
    q = (mf.q.conv.weight[:, :, 0, 0] != 0).float()
    p = (mf.p.conv.weight[:, :, 0, 0] != 0).float()
    dense_q = torch.block_diag(*q.view(3, 3, 6))  # (9, 18)
    dense_p = torch.block_diag(*p.view(3, 6, 3))  # (18, 9)
    perm = ChannelShuffle(3)(torch.eye(9).view(1, 9, 9, 1)).view(9, 9)
    paths = dense_p @ perm @ dense_q
    assert torch.equal(paths, torch.ones(18, 18))  # E = C: one path per pair
    for bi in range(3):
        for bj in range(3):
            assert torch.linalg.matrix_rank(w[bi * 6:(bi + 1) * 6, bj * 6:(bj + 1) * 6]) == 1


def test_lite_combination_shapes():
    lite = LiteCombination(4, 8, 3, stride=2, expand=(2, 2), groups=(4, 2))
    assert lite(torch.randn(2, 4, 16, 16)).shape == (2, 8, 8, 8)
    assert lite.depthwise.out_channels == 16 and lite.compress.conv.groups == 2


def test_stem():
    stem = MicroStem(3, 4, 3)
    assert stem(torch.randn(1, 3, 33, 40)).shape == (1, 12, 17, 20)


def test_micro_blocks_shapes_and_residual():
    act = ActSettings()
    a = MicroBlockA(8, BlockSpec('A', 3, 2, (2, 2), 12, (0, 8), (4, 4), (2, 2, 1), 1), act)
    b = MicroBlockB(12, BlockSpec('B', 5, 1, (1, 4), 32, (4, 4), (4, 4), (2, 2, 1), 1), act)
    c = MicroBlockC(32, BlockSpec('C', 5, 1, (1, 6), 32, (8, 8), (4, 4), (2, 2, 1), 2), act)
    x = torch.randn(2, 8, 32, 32)
    y = c(b(a(x)))
    assert y.shape == (2, 32, 16, 16)
    assert c.use_residual and not b.use_residual
    assert isinstance(a.act2, DynamicShiftMax) and a.act2.num_fusions == 1  # A2: K=1
    assert isinstance(c.act2, DynamicShiftMax) and c.act2.num_fusions == 2
