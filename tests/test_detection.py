"""Detection with MicroNet in mmdet: configs, MAdds, the demo training (mAP on held-out data),
inference, kill-and-resume, 2-process training and clear errors for bad inputs."""
import glob
import os
import os.path as osp
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch
from mmengine.config import Config

from conftest import ROOT, train_demo

DET_CONFIGS = ['retinanet_micronet_m3', 'retinanet_micronet_m2', 'faster-rcnn_micronet_m3_fpn',
               'faster-rcnn_micronet_m2_fpn']
DEMO_CFG = osp.join(ROOT, 'configs/det/retinanet_micronet_m3_demo-shapes.py')
# classifier backbones' MAdds at 224 (tests/test_configs.py, README): M3 18.90M, M2 10.93M
BACKBONE_MADDS = {'m3': 18.90e6, 'm2': 10.93e6}


def cfg_path(name):
    return osp.join(ROOT, 'configs', 'det', f'{name}.py')


def build(cfg):
    from tools.analysis.get_flops import build_model
    return build_model(cfg)


@pytest.mark.parametrize('name', DET_CONFIGS)
def test_config_builds_and_trains_one_step_at_320(name):
    from mmdet.structures import DetDataSample
    from mmengine.structures import InstanceData
    model = build(Config.fromfile(cfg_path(name)))
    model.train()
    sample = DetDataSample(metainfo=dict(img_shape=(320, 320), pad_shape=(320, 320),
                                         batch_input_shape=(320, 320), scale_factor=(1.0, 1.0)))
    sample.gt_instances = InstanceData(bboxes=torch.tensor([[30., 40., 150., 200.],
                                                            [200., 100., 300., 310.]]),
                                       labels=torch.tensor([0, 5]))
    total, _ = model.parse_losses(model.loss(torch.randn(1, 3, 320, 320), [sample]))
    total.backward()
    grads = [p.grad for p in model.backbone.parameters() if p.requires_grad]
    assert grads and all(g is not None for g in grads)
    assert model.neck.in_channels == model.backbone.out_channels  # from the backbone


@pytest.mark.parametrize('name', DET_CONFIGS)
def test_backbone_madds_match_classifier_backbones(name):
    from tools.analysis.get_flops import main
    report = main([cfg_path(name)])
    arch = 'm3' if '_m3' in name else 'm2'
    assert report['shape'] == (224, 224)
    assert report['backbone'].madds == pytest.approx(BACKBONE_MADDS[arch], rel=0.005)


def test_fpn_levels_and_schedule():
    retina = Config.fromfile(cfg_path('retinanet_micronet_m3'))
    frcnn = Config.fromfile(cfg_path('faster-rcnn_micronet_m3_fpn'))
    assert retina.model.backbone.out_indices == (1, 2, 3)  # strides 8/16/32 -> P3-P7
    assert retina.model.neck.num_outs == 5 and retina.model.neck.start_level == 0
    assert frcnn.model.backbone.out_indices == (0, 1, 2, 3)  # strides 4/8/16/32
    for cfg in (retina, frcnn):
        assert cfg.train_cfg.max_epochs == 36
        assert cfg.param_scheduler[1].milestones == [28, 34]
        assert cfg.optim_wrapper.optimizer.type == 'SGD'
        assert cfg.train_dataloader.dataset.type == 'CocoDataset'  # no RepeatDataset
        resize = [t for t in cfg.train_pipeline if t.type == 'RandomResize'][0]
        assert resize.scale == [(1333, 640), (1333, 800)]  # multi-scale as mmdet's 3x
        assert cfg.model.backbone.init_cfg.checkpoint == cfg.pretrained


def test_missing_coco_and_checkpoint_are_reported(tmp_path):
    from micronet_mm.tools_common import MissingInputError
    from tools.train import main
    with pytest.raises(MissingInputError) as err:
        main([cfg_path('retinanet_micronet_m3'), '--work-dir', str(tmp_path),
              '--cfg-options', 'train_dataloader.dataset.data_root=/nowhere/coco/',
              'val_dataloader.dataset.data_root=/nowhere/coco/'])
    text = str(err.value)
    assert "train_dataloader.dataset.data_root: '/nowhere/coco/' does not exist" in text
    assert "model.backbone.init_cfg.checkpoint: checkpoint 'checkpoints/micronet-m3_in1k.pth'" \
        in text
    assert '--cfg-options' in text
    assert not list(tmp_path.iterdir())  # stopped before building anything


@pytest.fixture(scope='session')
def det_data():
    from micronet_mm.datasets.demo_det import ensure_demo_det
    return ensure_demo_det(osp.join(ROOT, 'data', 'demo_det'))


@pytest.fixture(scope='session')
def det_run(det_data, tmp_path_factory):
    """The demo training through the command line, as the README's main job runs it."""
    work = tmp_path_factory.mktemp('det')
    train_demo(DEMO_CFG, work)
    return work


def last_checkpoint(work_dir):
    return (work_dir / 'last_checkpoint').read_text().strip()


def test_demo_reaches_map50_on_held_out_split(det_run, capsys):
    from tools.test import main
    show = det_run / 'vis'
    ckpt = last_checkpoint(det_run)
    assert ckpt.endswith(f'epoch_{Config.fromfile(DEMO_CFG).train_cfg.max_epochs}.pth')
    metrics = main([DEMO_CFG, ckpt, '--work-dir', str(det_run),
                    '--show-dir', str(show)])
    assert metrics['coco/bbox_mAP_50'] >= 0.5  # evaluated on val.json, never trained on
    pngs = glob.glob(str(show / '**' / '*.png'), recursive=True)
    assert len(pngs) == 60  # one drawn prediction per validation image
    folder = capsys.readouterr().out.split('Drew 60 test images into ', 1)[1].splitlines()[0]
    assert sorted(glob.glob(osp.join(folder, '**', '*.png'), recursive=True)) == sorted(pngs)


def test_det_inferencer_with_our_config(det_run, det_data):
    from mmdet.apis import DetInferencer
    inferencer = DetInferencer(model=DEMO_CFG, weights=last_checkpoint(det_run),
                               device='cpu', show_progress=False)
    image = osp.join(det_data, 'val', '00000.png')
    result = inferencer(image, out_dir=str(det_run / 'inferencer'), no_save_pred=False)
    pred = result['predictions'][0]
    assert len(pred['bboxes']) == len(pred['scores']) == len(pred['labels']) > 0
    assert max(pred['scores']) > 0.3
    assert glob.glob(str(det_run / 'inferencer' / 'vis' / '*.png'))


SHORT = ['train_cfg.max_epochs=3', 'default_hooks.checkpoint.interval=1',
         'default_hooks.checkpoint.max_keep_ckpts=5', 'train_cfg.val_interval=100',
         'train_dataloader.dataset.indices=32', 'train_dataloader.num_workers=1',
         'train_dataloader.persistent_workers=False', 'randomness.deterministic=True',
         'default_hooks.logger.interval=1']


def test_killed_training_resumes_to_identical_weights(det_data, tmp_path):
    """Run A trains 3 epochs; run B is SIGKILLed after its epoch-1 checkpoint and resumed.
    Same seed, deterministic algorithms, per-epoch worker seeding: the weights must be equal."""
    train = [sys.executable, 'tools/train.py', DEMO_CFG]
    full, killed = tmp_path / 'full', tmp_path / 'killed'
    subprocess.run(train + ['--work-dir', str(full), '--cfg-options', *SHORT], cwd=ROOT,
                   check=True, capture_output=True)
    proc = subprocess.Popen(train + ['--work-dir', str(killed), '--cfg-options', *SHORT],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.time() + 600
    while not (killed / 'epoch_1.pth').exists() and proc.poll() is None:
        assert time.time() < deadline
        time.sleep(0.2)
    time.sleep(1.0)  # let the checkpoint file be complete, then kill mid-epoch 2
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (killed / 'epoch_3.pth').exists()
    subprocess.run(train + ['--work-dir', str(killed), '--resume', '--cfg-options', *SHORT],
                   cwd=ROOT, check=True, capture_output=True)
    a = torch.load(full / 'epoch_3.pth', weights_only=True)['state_dict']
    b = torch.load(killed / 'epoch_3.pth', weights_only=True)['state_dict']
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_dist_train_two_processes_on_cpu(det_data, tmp_path):
    env = dict(os.environ, PORT='29513')
    out = subprocess.run(['bash', 'tools/dist_train.sh', DEMO_CFG, '2', '--work-dir',
                          str(tmp_path), '--cfg-options', 'train_cfg.max_epochs=1',
                          'train_dataloader.dataset.indices=16', 'train_cfg.val_interval=100'],
                         cwd=ROOT, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-3000:]
    assert (tmp_path / 'epoch_1.pth').is_file()
    log = ''.join(open(p).read() for p in glob.glob(str(tmp_path / '*' / '*.log')))
    assert 'Distributed training: True' in log


def test_corrupt_image_gives_clear_error(det_data, tmp_path):
    from micronet_mm.tools_common import CorruptImageError
    from tools.test import main
    root = tmp_path / 'demo_det'
    shutil.copytree(det_data, root)
    (root / 'val' / '00003.png').write_bytes(b'\x89PNG broken')
    ckpt = tmp_path / 'model.pth'
    model = build(Config.fromfile(DEMO_CFG))
    torch.save({'state_dict': model.state_dict(), 'meta': {}}, ckpt)
    data_root = f'{root}/'
    with pytest.raises(CorruptImageError, match=r'cannot decode image .*val/00003.png'):
        main([DEMO_CFG, str(ckpt), '--work-dir', str(tmp_path / 'w'), '--cfg-options',
              f'test_dataloader.dataset.data_root={data_root}',
              f'test_evaluator.ann_file={data_root}annotations/val.json',
              'test_dataloader.num_workers=0', 'test_dataloader.persistent_workers=False'])
