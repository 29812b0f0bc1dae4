"""Exported models in use (micronet_mm/apis/exported.py, micronet_mm/runtime/loaders.py): what
``load_exported`` returns equals the toolboxes' own inference on real images for every task and
runtime; the metadata file is untrusted input; the demos' ``--exported`` flag; the exported demo
detector's mAP (tools/deployment/test_exported.py)."""
import copy
import json
import os.path as osp

import numpy as np
import pytest
import torch
from conftest import (DET_DEMO, POSE_DEMO, ROOT, SEG_DEMO, SHAPES_CFG, build_from_config,
                      dense_trained_like, detector_with_detections, trained_like)

from micronet_mm.apis import load_exported
from micronet_mm.apis.exported import metadata_path, read_metadata
from micronet_mm.errors import InvalidInputError, MissingInputError
from micronet_mm.ops import fused_shift_max

pytest.importorskip('onnxruntime')

#: task -> (config, input size of its demo images after preprocessing, whether the export
#: needs dynamic height and width for other images)
TASKS = {'classifier': (SHAPES_CFG, (64, 64), True),
         'detection': (DET_DEMO, (128, 128), False),  # always dynamic (end to end)
         'pose': (POSE_DEMO, (64, 48), False),  # the box affine makes the codec's size
         'segmentation': (SEG_DEMO, (128, 256), True)}
#: runtime forms: (export_onnx backend, deploy, runtime that opens the file)
FORMS = {'onnxruntime': ('onnxruntime', False, 'onnxruntime'),
         'openvino': ('onnxruntime', False, 'openvino'),  # OpenVINO reading the ONNX file
         'openvino-native': ('openvino', True, 'openvino')}  # the IR with native nodes


@pytest.fixture(scope='module')
def images(tmp_path_factory):
    """Real images of each demo dataset: two per task, one of them cropped to another aspect
    (so that resizing and padding take part)."""
    from micronet_mm.datasets.demo_cityscapes import ensure_demo_cityscapes
    from micronet_mm.datasets.demo_det import ensure_demo_det
    from micronet_mm.datasets.demo_pose import ensure_demo_pose
    from micronet_mm.datasets.demo_shapes import ensure_demo_shapes
    from PIL import Image
    root = tmp_path_factory.mktemp('data')
    found = {
        'classifier': ensure_demo_shapes(str(root / 'shapes'), per_class=(1, 1)),
        'detection': ensure_demo_det(str(root / 'det'), sizes=(2, 2)),
        'pose': ensure_demo_pose(str(root / 'pose'), num_images=(2, 2)),
        'segmentation': ensure_demo_cityscapes(str(root / 'city'), counts=(2, 2))}
    out = {}
    for task, folder in found.items():
        files = sorted(p for p in glob_images(folder)
                       if '/val' in p and 'gtFine' not in p)[:1]  # images, not label maps
        rgb = np.asarray(Image.open(files[0]).convert('RGB'))
        h, w = rgb.shape[:2]
        # the detector: a crop that needs no padding (the end-to-end graph clips boxes to its
        # padded input, mmdet to the resized image: near a padded edge, NMS may differ)
        cropped = np.ascontiguousarray(rgb[:, :96] if task == 'detection' else
                                       rgb[: h * 3 // 4, : w - w // 5])
        out[task] = [files[0], cropped]
    return out


def glob_images(folder):
    import glob
    return glob.glob(osp.join(folder, '**', '*.png'), recursive=True) + glob.glob(
        osp.join(folder, '**', '*.jpg'), recursive=True)


def trained_model(task):
    config, shape, _ = TASKS[task]
    if task == 'classifier':
        from conftest import calibrate
        return calibrate(trained_like(build_from_config(config)), shape,
                         run=lambda m, x: m(x, mode='tensor'))
    if task == 'detection':  # real images give larger logits than random ones: fewer, unsaturated
        model = detector_with_detections(config, shape)
        with torch.no_grad():
            model.bbox_head.retina_cls.weight.mul_(0.3)
            model.bbox_head.retina_cls.bias.sub_(0.3)
        return model
    return dense_trained_like(config, shape)


@pytest.fixture(scope='module')
def exported(tmp_path_factory):
    """``(checkpoint, exported file)`` per (task, form), made on first use."""
    made = {}

    def get(task, form):
        if (task, form) not in made:
            from tools.deployment.export_onnx import main
            backend, deploy, _ = FORMS[form]
            if form == 'openvino-native' and not fused_shift_max.available():
                pytest.skip('the native operators are not built')
            pytest.importorskip('openvino') if backend == 'openvino' else None
            folder = tmp_path_factory.mktemp(f'{task}-{form}')
            ckpt = str(folder / 'model.pth')
            key = ('ckpt', task)
            if key not in made:
                torch.save({'state_dict': trained_model(task).state_dict(), 'meta': {}}, ckpt)
                made[key] = ckpt
            config, shape, dynamic = TASKS[task]
            # the OpenVINO IR has a fixed size: the demo images' own
            extra = (['--dynamic-shape'] if backend == 'onnxruntime' else
                     ['--shape', str(shape[0]), str(shape[1])]) if dynamic else []
            out = str(folder / ('model.xml' if backend == 'openvino' else 'model.onnx'))
            main([config, made[key], '--out', out, '--backend', backend, '--no-check',
                  *(['--deploy'] if deploy else []), *extra])
            made[(task, form)] = (made[key], out)
        return made[(task, form)]
    return get


def toolbox_result(task, config, ckpt, image):
    """The toolbox's own inference on ``image`` (path or RGB array)."""
    if task == 'classifier':
        from mmpretrain.apis import ImageClassificationInferencer, init_model
        model = init_model(config, ckpt, device='cpu')
        img = image if isinstance(image, str) else np.ascontiguousarray(image[..., ::-1])
        return torch.as_tensor(ImageClassificationInferencer(model)(img)[0]['pred_scores'])
    if task == 'detection':
        from mmdet.apis import inference_detector, init_detector
        model = init_detector(config, ckpt, device='cpu')
        img = image if isinstance(image, str) else np.ascontiguousarray(image[..., ::-1])
        return inference_detector(model, img)
    if task == 'pose':
        from micronet_mm.apis import estimate_poses, init_pose_model
        return estimate_poses(init_pose_model(config, ckpt), image, boxes=[[4, 6, 60, 100]])
    from micronet_mm.apis import init_segmentor, segment
    return segment(init_segmentor(config, ckpt), image, return_sample=True)[1]


@pytest.mark.parametrize('form', list(FORMS))
@pytest.mark.parametrize('task', list(TASKS))
def test_exported_equals_toolbox(task, form, exported, images):
    if task == 'detection' and form == 'openvino-native':
        pytest.skip('the end-to-end detector exports for ONNX (OpenVINO reads that file)')
    ckpt, path = exported(task, form)
    model = load_exported(path, FORMS[form][2])
    assert model.task == task and model.runtime == FORMS[form][2]
    config, _, dynamic = TASKS[task]
    # a fixed-size IR takes the uncropped demo image only
    for image in images[task][:1 if dynamic and form == 'openvino-native' else 2]:
        want = toolbox_result(task, config, ckpt, image)
        if task == 'classifier':
            got = model(image)
            np.testing.assert_allclose(got.pred_score.numpy(), want.numpy(), atol=1e-5)
            assert int(got.pred_label) == int(want.argmax())
        elif task == 'detection':
            from tools.deployment.export_onnx import match_detections
            got, want = model(image).pred_instances, want.pred_instances
            assert 0 < len(want.scores) <= 100 and float(want.scores.max()) < 0.99
            errs = match_detections(got.bboxes.numpy(), got.scores.numpy(), got.labels.numpy(),
                                    want.bboxes.numpy(), want.scores.numpy(),
                                    want.labels.numpy())
            assert errs is not None, (len(got.scores), len(want.scores))
            assert errs[0] <= 1e-3 * float(want.bboxes.abs().max()) and errs[1] <= 1e-4
        elif task == 'pose':
            got = model.estimate_poses(image, boxes=[[4, 6, 60, 100]])
            assert got.keypoints.shape == want.keypoints.shape
            # random pose heads amplify float32 rounding (test_deploy.py: 2.4e-3; OpenVINO more)
            np.testing.assert_allclose(got.keypoint_scores, want.keypoint_scores, rtol=1e-2,
                                       atol=1e-4)
            np.testing.assert_allclose(got.keypoints, want.keypoints, atol=1e-3)
            assert [type(s).__name__ for s in model(image, [[4, 6, 60, 100]])] == [
                'PoseDataSample']
        else:
            got = model(image)
            assert got.pred_sem_seg.data.shape == want.pred_sem_seg.data.shape
            logits = want.seg_logits.data
            err = (got.seg_logits.data - logits).abs().max() / logits.abs().max()
            assert err < 1e-4
            same = (got.pred_sem_seg.data == want.pred_sem_seg.data).float().mean()
            assert same > 0.999


def test_exported_metadata_is_written_and_complete(exported):
    _, path = exported('pose', 'onnxruntime')
    meta = read_metadata(path)
    assert meta['task'] == 'pose' and meta['input_size'] == [64, 48]
    assert meta['codec']['type'] == 'MSRAHeatmap' and meta['flip_test'] is True
    assert meta['resize'] == {'type': 'topdown_affine', 'padding': 1.25}
    assert len(meta['flip_indices']) == len(meta['classes']) > 0
    _, path = exported('detection', 'onnxruntime')
    meta = read_metadata(path)
    assert meta['output_names'] == ['boxes', 'scores', 'labels'] and meta['dynamic_hw']
    assert meta['classes'] == ['square', 'circle', 'triangle']
    assert meta['resize'] == {'type': 'keep_ratio', 'scale': [128, 128]}
    assert meta['size_divisor'] == 32 and meta['to_rgb'] is True


BAD_METADATA = [
    ('not json', lambda m: '{"task": ', 'not valid JSON'),
    ('list', lambda m: [m], 'not a JSON object'),
    ('format', lambda m: {**m, 'format': 'other'}, "'format'"),
    ('task', lambda m: {**m, 'task': 'tracking'}, "'task'"),
    ('mean', lambda m: {**m, 'mean': [1, 2]}, "'mean'"),
    ('std zero', lambda m: {**m, 'std': [1, 0, 1]}, "'std'"),
    ('nan', lambda m: json.dumps(m).replace('"pad_value": 0.0', '"pad_value": NaN'),
     'not a JSON number'),
    ('size', lambda m: {**m, 'input_size': [64, 10 ** 9]}, "'input_size'"),
    ('bool as int', lambda m: {**m, 'size_divisor': True}, "'size_divisor'"),
    ('resize', lambda m: {**m, 'resize': {'type': 'shell', 'cmd': 'rm'}}, "'resize'"),
    ('codec', lambda m: {**m, 'codec': {**m['codec'], 'type': 'os.system'}}, "'codec'"),
    ('flip', lambda m: {**m, 'flip_indices': [0] * len(m['flip_indices'])}, 'flip_indices'),
    ('flip types', lambda m: {**m, 'flip_indices': ['a', 1]}, 'flip_indices'),
    ('links', lambda m: {**m, 'skeleton_links': [[0, 99]]}, 'skeleton_links'),
    ('classes', lambda m: {**m, 'classes': [1, 2]}, "'classes'"),
    ('deep', lambda m: '[' * 100000 + ']' * 100000, 'nested too deeply'),
    ('huge', lambda m: ' ' * (2 << 20) + '{}', 'larger than'),
]


@pytest.mark.parametrize('name, corrupt, message', BAD_METADATA, ids=[b[0] for b in BAD_METADATA])
def test_bad_metadata_is_one_line_error(tmp_path, exported, name, corrupt, message):
    import shutil
    _, path = exported('pose', 'onnxruntime')
    meta = read_metadata(path)
    copy_path = str(tmp_path / 'model.onnx')
    shutil.copy(path, copy_path)
    bad = corrupt(copy.deepcopy(meta))
    with open(metadata_path(copy_path), 'w') as f:
        f.write(bad if isinstance(bad, str) else json.dumps(bad))
    with pytest.raises(InvalidInputError, match=message) as e:
        load_exported(copy_path)
    assert '\n' not in str(e.value) and 'model.onnx.json' in str(e.value)


def test_missing_metadata_and_unknown_runtime(tmp_path, exported):
    import shutil
    _, path = exported('classifier', 'onnxruntime')
    bare = str(tmp_path / 'bare.onnx')
    shutil.copy(path, bare)
    with pytest.raises(MissingInputError, match='bare.onnx.json'):
        load_exported(bare)
    with pytest.raises(InvalidInputError, match='unknown runtime'):
        load_exported(path, 'tensorrt')
    other = str(tmp_path / 'model.bin2')
    shutil.copy(path, other)
    shutil.copy(metadata_path(path), metadata_path(other))
    with pytest.raises(InvalidInputError, match='suffix'):
        load_exported(other)


def test_exported_refuses_a_fixed_size_mismatch(tmp_path):
    """A graph of fixed size refuses images that preprocess to another size, in one line."""
    from tools.deployment.export_onnx import main
    ckpt = str(tmp_path / 'm.pth')
    torch.save({'state_dict': build_from_config(SHAPES_CFG).state_dict(), 'meta': {}}, ckpt)
    out = str(tmp_path / 'fixed.onnx')
    main([SHAPES_CFG, ckpt, '--out', out, '--shape', '64', '64', '--no-check'])
    with pytest.raises(InvalidInputError, match='--dynamic-shape'):
        load_exported(out)(np.zeros((32, 48, 3), np.uint8))


def test_demos_exported_flag_same_output(tmp_path, exported, images, capsys):
    """``demo/pose_demo.py`` and ``demo/seg_demo.py`` with ``--exported`` print and write what
    the PyTorch path does."""
    from conftest import load_script
    pose_demo, seg_demo = load_script('demo/pose_demo.py'), load_script('demo/seg_demo.py')
    ckpt, path = exported('pose', 'onnxruntime')
    image = images['pose'][0]
    capsys.readouterr()  # what the export printed
    lines = []
    for args in ([POSE_DEMO, ckpt], ['--exported', path]):
        pose_demo.main([image, *args, '--out-file', str(tmp_path / f'p{len(lines)}.png'),
                        '--box', '4', '6', '60', '100'])
        lines.append(capsys.readouterr().out.splitlines()[0])
    assert lines[0] == lines[1]
    ckpt, path = exported('segmentation', 'onnxruntime')
    image = images['segmentation'][0]
    maps = []
    for i, args in enumerate(([SEG_DEMO, ckpt], ['--exported', path])):
        out = str(tmp_path / f's{i}.png')
        seg_demo.main([image, *args, '--out', out])
        from PIL import Image
        maps.append(np.asarray(Image.open(out[:-4] + '_classes.png')))
    assert (maps[0] == maps[1]).mean() > 0.999


def test_exported_demo_detector_map_equals_pytorch(tmp_path, capsys):
    """The demo detector, briefly trained on the demo split, exported end to end: its bbox mAP
    on the demo split through ``tools/deployment/test_exported.py`` equals PyTorch's to 0.01,
    and is not 0 (the model detects something)."""
    from micronet_mm.datasets.demo_det import ensure_demo_det
    from tools.deployment.export_onnx import main as export
    from tools.deployment.test_exported import main as evaluate
    data = ensure_demo_det(str(tmp_path / 'det'), sizes=(40, 12))
    options = [f'train_dataloader.dataset.data_root={data}/',
               f'test_dataloader.dataset.data_root={data}/',
               f'val_dataloader.dataset.data_root={data}/',
               f'test_evaluator.ann_file={data}/annotations/val.json',
               f'val_evaluator.ann_file={data}/annotations/val.json']
    ckpt = train_demo_detector(tmp_path / 'work', options)
    out = str(tmp_path / 'det.onnx')
    # a briefly trained model scores low: every candidate counts (the same in both)
    options.append('model.test_cfg.score_thr=0.0')
    export([DET_DEMO, ckpt, '--out', out, '--no-check', '--cfg-options', *options])
    results = evaluate([DET_DEMO, out, '--checkpoint', ckpt, '--cfg-options', *options])
    torch_map = results['pytorch']['coco/bbox_mAP']
    assert abs(results['exported']['coco/bbox_mAP'] - torch_map) <= 0.01
    assert results['pytorch']['coco/bbox_mAP_50'] > 0.0
    printed = capsys.readouterr().out
    assert 'PyTorch' in printed and 'exported (onnxruntime)' in printed


def train_demo_detector(work, options) -> str:
    """A few epochs of the demo detector on the small demo split (one process)."""
    import subprocess
    import sys
    subprocess.run([sys.executable, 'tools/train.py', DET_DEMO, '--work-dir', str(work),
                    '--cfg-options', 'train_cfg.max_epochs=3', 'train_cfg.val_interval=100',
                    'param_scheduler.1.end=3', *options], cwd=ROOT, check=True)
    with open(osp.join(work, 'last_checkpoint')) as f:
        return f.read().strip()
