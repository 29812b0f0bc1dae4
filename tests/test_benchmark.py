"""Smoke run of tools/analysis/benchmark.py (tiny shapes, one round): every table, column and
the plot appear, with numbers that are measurements (positive, finite). Speed itself is never
asserted: the benchmark prints it."""
import math

import pytest
import torch

from micronet_mm.ops import fused_shift_max


def test_benchmark_smoke(tmp_path):
    from tools.analysis.benchmark import EDGE, RUNTIMES, main
    res = main(['--models', 'm0', 'mnv3-s-050', '--rounds', '2', '--iters', '1', '--warmup', '1',
                '--shape', '96', '96', '--dense', 'pose-m0', 'pose-mnv2', 'seg-v1-m0',
                '--dense-scale', '0.25', '--dense-rounds', '1', '--dense-iters',
                '1', '--train-steps', '1', '--train-batch', '2', '--train-models', 'm0',
                '--out-dir', str(tmp_path)])
    # (LR-ASPP's fixed 49x49 pooling needs the full 512x1024 input: built in the next test)
    micronet, baselines = ('m0', 'pose-m0', 'seg-v1-m0'), ('mnv3-s-050', 'pose-mnv2')
    # MNN and ncnn: the classifiers only; ncnn runs MicroNet in deploy form only
    edge = {('m0', 'mnn'), ('m0', 'mnn deploy'), ('m0', 'ncnn deploy'), ('mnv3-s-050', 'mnn'),
            ('mnv3-s-050', 'ncnn')}
    assert set(res['median']) == ({(n, r) for n in micronet for r in RUNTIMES if r not in EDGE}
                                  | {(n, r) for n in baselines for r in ('eager', 'ort', 'ov')}
                                  | edge)
    assert all(v > 0 and math.isfinite(v) for v in res['median'].values())
    # the fastest single call of each: measured for every row, never above its median of means
    assert set(res['fastest']) == set(res['median'])
    assert all(0 < res['fastest'][k] <= res['median'][k] for k in res['median'])
    assert 1e9 < res['peak'] < 1e13  # MAC/s of one core
    assert res['madds']['mnv3-s-050'] > res['madds']['m0'] > 0
    variants = ['reference', 'fused'] if fused_shift_max.available() else ['reference']
    assert set(res['train']) == {('m0', v) for v in variants}
    assert all(rate > 0 and mib >= 0 for rate, mib in res['train'].values())
    text = (tmp_path / 'benchmark.md').read_text()
    for row in ('| MicroNet-M0 / MobileNetV3-Small x0.5 |',
                '| MicroNet pose-m0 (256x192) / mmpose MobileNetV2 (256x192) |',
                'ov fused ms (IQR)', 'ncnn deploy ms (IQR)', 'Latency / arithmetic bound',
                'peak MiB',
                'ratios of per-call minima'):
        assert row in text
    # both ratio tables: the M0 row once per table
    assert text.count('| MicroNet-M0 / MobileNetV3-Small x0.5 |') == 2
    png = tmp_path / 'latency_vs_top1.png'
    assert png.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'


@pytest.mark.parametrize('name', ['pose-mnv2', 'seg-lraspp'])
def test_dense_baselines_are_the_toolboxes_configs(name):
    """The dense baselines are built from mmpose's own config (MobileNetV2 backbone) and from
    mmseg's LR-ASPP MobileNetV3-Small config at the MobileNetV3 paper's setting
    (tools/analysis/baselines/), and run at their input size."""
    from tools.analysis.bench_models import DENSE, build
    model = build(name)
    kind = {'pose-mnv2': ('MobileNetV2', 'HeatmapHead'),
            'seg-lraspp': ('PaperMobileNetV3', 'PaperLRASPPHead')}
    head = model.head if name == 'pose-mnv2' else model.decode_head
    assert (type(model.backbone).__name__, type(head).__name__) == kind[name]
    h, w = DENSE[name][2]
    with torch.no_grad():
        out = model(torch.randn(1, 3, h, w), None, mode='tensor')
    assert out.shape[:2] == ((1, 17) if name == 'pose-mnv2' else (1, 19))


def test_measure_times_every_call_with_the_collector_off():
    """Each timed call runs with Python's garbage collector off (as ``timeit``), warm-up calls
    with it on, and ``measure`` turns it back on, also when a call raises."""
    import gc

    from tools.analysis.bench_models import measure
    seen = []
    times, fastest = measure({'a': lambda: seen.append(gc.isenabled())}, rounds=2, iters=3,
                             warmup=1)
    assert seen == [True] + [False] * 6 and gc.isenabled()
    assert len(times['a']) == 2 and 0 < fastest['a'] <= max(times['a'])

    def boom():
        raise RuntimeError('boom')
    with pytest.raises(RuntimeError):
        measure({'b': boom}, rounds=1, iters=1, warmup=0)
    assert gc.isenabled()


def test_benchmark_detectors_smoke(tmp_path):
    """The whole detectors end to end (RetinaNet-MicroNet-M3 and the same RetinaNet with
    MobileNetV3-Small x1.0) in every runtime but ncnn (no NonMaxSuppression), on a tiny input:
    every row and the ratio row."""
    from tools.analysis.benchmark import NCNN_RUNTIMES, RUNTIMES, main
    res = main(['--models', 'm0', '--rounds', '1', '--iters', '1', '--warmup', '0',
                '--shape', '64', '64', '--dense', 'det-m3', 'det-mnv3', '--dense-scale', '0.1',
                '--dense-rounds', '1', '--dense-iters', '1', '--train-steps', '0',
                '--out-dir', str(tmp_path)])
    rows = {k for k in res['median'] if k[0].startswith('det-')}
    assert rows == ({('det-m3', r) for r in RUNTIMES if r not in NCNN_RUNTIMES}
                    | {('det-mnv3', r) for r in ('eager', 'ort', 'ov', 'mnn')})
    assert all(res['median'][k] > 0 and math.isfinite(res['median'][k]) for k in rows)
    assert res['madds']['det-mnv3'] > res['madds']['det-m3'] > 0  # the same FPN and head
    text = (tmp_path / 'benchmark.md').read_text()
    assert text.count('| RetinaNet MicroNet-M3 (800x1344, with NMS) / RetinaNet MobileNetV3-Small '
                      'x1.0 (800x1344, with NMS) |') == 2


def test_detector_baseline_has_the_same_strides():
    """The baseline detector is the M3 RetinaNet with mmpretrain's MobileNetV3-Small x1.0
    backbone: its three outputs have the M3 backbone's strides (8, 16, 32) and the FPN's
    widths, and everything after the backbone is the same."""
    from tools.analysis.bench_models import build
    m3, mnv3 = build('det-m3').detector, build('det-mnv3').detector
    assert type(mnv3.backbone).__name__ == 'MobileNetV3' and mnv3.backbone.arch == 'small'
    x = torch.randn(1, 3, 128, 192)
    with torch.no_grad():
        for model in (m3, mnv3):
            feats = model.backbone(x)
            assert [f.shape[2:] for f in feats] == [(16, 24), (8, 12), (4, 6)]
            assert [f.shape[1] for f in feats] == list(model.neck.in_channels)
    assert repr(m3.bbox_head) == repr(mnv3.bbox_head)


def test_lraspp_baseline_is_the_papers():
    """The segmentation baseline counts the MobileNetV3 paper's LR-ASPP (MicroNet paper
    Table 9: 2.90 G MAdds at 1024x2048) to within 3%, has output stride 16 and its 1/8 branch,
    and is not mmseg's output-stride-8 model (8.45 G at 512x1024)."""
    from micronet_mm.analysis import count_complexity
    from tools.analysis.bench_models import build
    model = build('seg-lraspp')
    with torch.no_grad():
        feats = model.extract_feat(torch.randn(1, 3, 256, 512))
    assert [tuple(f.shape[1:]) for f in feats] == [(24, 32, 64), (288, 16, 32)]
    madds = count_complexity(model, (3, 1024, 2048),
                             forward=lambda x: model(x, None, mode='tensor')).madds
    assert abs(madds / 2.90e9 - 1) < 0.03, madds
