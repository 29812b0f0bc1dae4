"""Small files that would exhaust memory or time, built here: each is refused before decoding
with one line naming the file, the limit and the variable that raises it, in a child process
whose address space is bounded (:data:`BOUND` above what it had at the fork). Controls show
that each file is a real bomb: decoded without the checks, it does not fit under the bound."""
import io
import os
import pickle
import struct
import subprocess
import sys
import zipfile
import zlib

import numpy as np
import pytest
import torch

from conftest import ROOT, assert_one_line_error, run_forked

#: memory a child may take on top of what it had when it was forked
BOUND = 768 * 2**20


def bounded(fn, *args, env=None, timeout=300):
    """``fn(*args)`` in a forked child under the memory bound: (outcome, classes, message)."""
    code, *result = run_forked(fn, *args, env=env, memory=BOUND, timeout=timeout)
    assert code == 0, f'the child died (exit code {code})'
    return tuple(result)


def assert_refused(result, path, variable):
    outcome, classes, message = result
    assert outcome == 'error' and 'LimitError' in classes, message
    first = message.splitlines()[0]
    assert str(path) in first and variable in first, first


# -------------------------------------------------------------------------- checkpoints

def pickle_of_list(n: int, memo: bool = True) -> bytes:
    """A protocol-2 pickle of one list of ``n`` items given at once (one MARK ... APPENDS):
    ``n`` reuses of one memoised object, or ``n`` small ints."""
    item = b'h\x01' if memo else b'K\x07'
    return (b'\x80\x02]q\x00(X\x01\x00\x00\x00aq\x01' + item * n + b'e.')


def zip_checkpoint(path, data_pkl: bytes, extra: dict | None = None,
                   compression=zipfile.ZIP_DEFLATED) -> str:
    """A ``.pth`` as torch writes it (its records taken from a real one), with our
    ``data.pkl`` and extra records, compressed."""
    real = io.BytesIO()
    torch.save({'x': 1}, real)
    with zipfile.ZipFile(real) as src, zipfile.ZipFile(path, 'w', compression) as dst:
        for info in src.infolist():
            name = info.filename
            content = data_pkl if name.endswith('/data.pkl') else src.read(name)
            dst.writestr(name, content)
        for name, content in (extra or {}).items():
            dst.writestr(f'{src.namelist()[0].split("/")[0]}/{name}', content)
    return str(path)


def inflating_tensor_pth(path, size: int) -> str:
    """A tensor record of ``size`` zero bytes, deflated (a few hundred KB on disk)."""
    real = io.BytesIO()
    torch.save({'w': torch.zeros(size // 4)}, real)
    with zipfile.ZipFile(real) as src:
        records = {i.filename: src.read(i.filename) for i in src.infolist()}
    with zipfile.ZipFile(path, 'w', zipfile.ZIP_DEFLATED) as dst:
        for name, content in records.items():
            dst.writestr(name, content)
    return str(path)


def via_safe_load(path):
    from micronet_mm.checkpoint import safe_load
    safe_load(path)


def via_torch_load_unchecked(path):  # the control: torch's own weights-only loading
    torch.load(path, weights_only=True)


def via_mmengine_load_checkpoint(path):  # load_from, init_model, the inferencers
    import micronet_mm  # noqa: F401
    from mmengine.runner import load_checkpoint
    load_checkpoint(torch.nn.Linear(1, 1), path)


CHECKPOINT_BOMBS = {
    # name: (builder(tmp_path) -> path, the variable named in the refusal)
    'inflating tensor record': (
        lambda tmp: inflating_tensor_pth(tmp / 'tensor.pth', 1 << 30),
        'MICRONET_MM_MAX_INFLATE'),
    'memo reuse, deflated': (
        lambda tmp: zip_checkpoint(tmp / 'memo.pth', pickle_of_list(20_000_000)),
        'MICRONET_MM_MAX_INFLATE'),
    'one huge container, stored': (
        lambda tmp: zip_checkpoint(tmp / 'items.pth', pickle_of_list(3_000_000, memo=False),
                                   compression=zipfile.ZIP_STORED),
        'MICRONET_MM_MAX_PICKLE_ITEMS'),
}


@pytest.fixture(scope='module')
def checkpoint_bombs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp('bombs')
    return {name: (build(tmp), variable) for name, (build, variable)
            in CHECKPOINT_BOMBS.items()}


@pytest.mark.parametrize('load', [via_safe_load, via_mmengine_load_checkpoint])
@pytest.mark.parametrize('bomb', list(CHECKPOINT_BOMBS))
def test_checkpoint_bombs_are_refused_under_the_bound(bomb, load, checkpoint_bombs):
    path, variable = checkpoint_bombs[bomb]
    assert os.path.getsize(path) < 8 * 2**20  # small files
    assert_refused(bounded(load, path), path, variable)


def test_checkpoint_bombs_are_real(checkpoint_bombs):
    """Without the checks, the inflating record does not fit under the bound."""
    path, _ = checkpoint_bombs['inflating tensor record']
    outcome, classes, message = bounded(via_torch_load_unchecked, path)
    assert outcome == 'error' and ('MemoryError' in classes or 'alloc' in message.lower()
                                   or 'memory' in message.lower()), message


@pytest.mark.parametrize('variable, value, bomb', [
    ('MICRONET_MM_MAX_PICKLE_OPS', '100000', 'one huge container, stored'),
    ('MICRONET_MM_MAX_PICKLE_BYTES', '1000000', 'one huge container, stored'),
])
def test_each_limit_is_named_and_can_be_lowered(variable, value, bomb, checkpoint_bombs):
    path, _ = checkpoint_bombs[bomb]
    assert_refused(bounded(via_safe_load, path, env={variable: value}), path, variable)


def test_raising_the_limit_lets_a_trusted_file_load(tmp_path):
    path = zip_checkpoint(tmp_path / 'items.pth', pickle_of_list(300_000, memo=False),
                          compression=zipfile.ZIP_STORED)
    assert_refused(bounded(via_safe_load, path, env={'MICRONET_MM_MAX_PICKLE_ITEMS': '1000'}),
                   path, 'MICRONET_MM_MAX_PICKLE_ITEMS')
    from micronet_mm.checkpoint import safe_load
    loaded = safe_load(path)  # under the default limit
    assert loaded[0] == 'a' and len(loaded) == 300_001


def test_legitimate_checkpoints_pass_the_limits(tmp_path):
    from micronet_mm.checkpoint import safe_load
    from micronet_mm.limits import check_checkpoint_file
    torch.save({'state_dict': {f'w{i}': torch.randn(64, 64) for i in range(200)},
                'meta': {'epoch': 3}}, tmp_path / 'ok.pth')
    torch.save({'w': torch.ones(3)}, tmp_path / 'legacy.pth',
               _use_new_zipfile_serialization=False)
    for name in ('ok.pth', 'legacy.pth'):
        check_checkpoint_file(str(tmp_path / name), name == 'legacy.pth')
        assert safe_load(tmp_path / name)


def test_the_cli_refusal_is_one_line(checkpoint_bombs, tmp_path):
    path, variable = checkpoint_bombs['inflating tensor record']
    cfg = os.path.join(ROOT, 'configs/pretrain/micronet-m0_1xb32_demo-shapes.py')
    proc = subprocess.run([sys.executable, 'tools/test.py', cfg, path, '--work-dir',
                           str(tmp_path / 'w')], cwd=ROOT, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 2
    assert_one_line_error(proc.stderr, path)
    assert variable in proc.stderr


# ------------------------------------------------------------------------ .pdparams

def pdparams(path, shape, data: bytes = b'') -> str:
    """A ``.pdparams`` pickle with one array whose state claims ``shape``."""
    from conftest import Forged
    multiarray = np._core.multiarray if hasattr(np, '_core') else np.core.multiarray
    array = Forged((multiarray._reconstruct, (np.ndarray, (0,), b'b'),
                    (1, shape, np.dtype('f4'), False, data)))
    with open(path, 'wb') as f:
        pickle.dump({'a.weight': array}, f, protocol=3)  # raw bytes as BINBYTES
    return str(path)


def via_load_pdparams(path):
    from micronet_mm.converters_paddle import load_pdparams
    load_pdparams(path)


@pytest.mark.parametrize('shape', [(2**32, 2**32), (2**62, 4), (2**31, 2**31, 2**31, 2**31),
                                   (2**64 - 1,), (10**30,)])
def test_pdparams_claimed_sizes_never_overflow(shape, tmp_path):
    """Element counts that wrap to 0 (or negative) in 64 bits: refused, one line, no crash."""
    path = pdparams(tmp_path / 'big.pdparams', shape)
    outcome, classes, message = bounded(via_load_pdparams, path)
    assert outcome == 'error' and 'ConversionError' in classes, message
    first = message.splitlines()[0]
    assert path in first and 'refused' in first and 'MemoryError' not in first, first


def test_pdparams_memo_bomb_is_refused(tmp_path):
    path = tmp_path / 'memo.pdparams'
    path.write_bytes(pickle_of_list(3_000_000))
    assert_refused(bounded(via_load_pdparams, str(path)), path, 'MICRONET_MM_MAX_PICKLE_ITEMS')


# --------------------------------------------------------------------------- images

def _chunk(kind: bytes, data: bytes) -> bytes:
    return (struct.pack('>I', len(data)) + kind + data
            + struct.pack('>I', zlib.crc32(kind + data) & 0xffffffff))


def png_bomb(path, width: int, height: int, bit_depth: int = 1) -> str:
    """A valid grayscale PNG of zeros: a few hundred KB that decode to width x height."""
    row = b'\x00' * (1 + (width * bit_depth + 7) // 8)  # filter byte + pixels
    packer = zlib.compressobj(9)
    idat = b''.join(packer.compress(row) for _ in range(height)) + packer.flush()
    ihdr = struct.pack('>IIBBBBB', width, height, bit_depth, 0, 0, 0, 0)
    with open(path, 'wb') as f:
        f.write(b'\x89PNG\r\n\x1a\n' + _chunk(b'IHDR', ihdr) + _chunk(b'IDAT', idat)
                + _chunk(b'IEND', b''))
    return str(path)


def bmp_header_bomb(path, width: int, height: int) -> str:
    """A BMP whose header claims width x height, with almost no pixel data."""
    header = struct.pack('<2sIHHI', b'BM', 54 + 16, 0, 0, 54)
    info = struct.pack('<IiiHHIIiiII', 40, width, height, 1, 24, 0, 0, 2835, 2835, 0, 0)
    with open(path, 'wb') as f:
        f.write(header + info + b'\x00' * 16)
    return str(path)


IMAGE_BOMBS = {
    '1-bit PNG 30000x30000': lambda tmp: png_bomb(tmp / 'a.png', 30000, 30000, 1),
    '8-bit PNG 12000x12000': lambda tmp: png_bomb(tmp / 'b.png', 12000, 12000, 8),
    'BMP header 40000x20000': lambda tmp: bmp_header_bomb(tmp / 'c.bmp', 40000, 20000),
    'PNG 1x200000000': lambda tmp: png_bomb(tmp / 'd.png', 200_000_000, 1, 1),
}


@pytest.fixture(scope='module')
def image_bombs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp('images')
    return {name: build(tmp) for name, build in IMAGE_BOMBS.items()}


def via_seg_api(path):
    from micronet_mm.apis import load_rgb_image
    load_rgb_image(path)


def via_pose_api(path):
    from micronet_mm.apis.pose import load_image
    load_image(path)


def via_dataset_pipeline(path):
    from mmcv.transforms import LoadImageFromFile

    from micronet_mm.tools_common import clear_data_errors
    with clear_data_errors():
        LoadImageFromFile()(dict(img_path=path))


@pytest.mark.parametrize('where', [via_seg_api, via_pose_api, via_dataset_pipeline])
@pytest.mark.parametrize('bomb', list(IMAGE_BOMBS))
def test_image_bombs_are_refused_before_decoding(bomb, where, image_bombs):
    path = image_bombs[bomb]
    assert os.path.getsize(path) < 2**20
    assert_refused(bounded(where, path), path, 'MICRONET_MM_MAX_IMAGE_PIXELS')


def test_image_limit_can_be_raised(tmp_path):
    path = png_bomb(tmp_path / 'small.png', 300, 200, 8)
    assert_refused(bounded(via_seg_api, path, env={'MICRONET_MM_MAX_IMAGE_PIXELS': '50000'}),
                   path, 'MICRONET_MM_MAX_IMAGE_PIXELS')
    assert bounded(via_seg_api, path)[0] == 'ok'
    assert bounded(via_pose_api, path)[0] == 'ok'


def test_image_bombs_are_real(image_bombs):
    """Without the header check, decoding the 1-bit PNG as the segmentation API did (PIL, then
    RGB) does not fit under the bound."""
    outcome, classes, message = bounded(_decode_unchecked, image_bombs['1-bit PNG 30000x30000'])
    assert outcome == 'error' and 'MemoryError' in classes, message


def _decode_unchecked(path):
    from PIL import Image
    Image.MAX_IMAGE_PIXELS = None  # PIL's own check off, as a caller that trusts it
    with Image.open(path) as im:
        im.convert('RGB')


def test_seg_demo_names_the_limit_in_one_line(image_bombs, tmp_path):
    cfg = os.path.join(ROOT, 'configs/seg/micronet-v1-m0-d16_mr-aspp_1xb4-80iter_demo-'
                       'cityscapes-128x256.py')
    path = image_bombs['1-bit PNG 30000x30000']
    proc = subprocess.run([sys.executable, 'demo/seg_demo.py', path, cfg, 'unused.pth',
                           '--out', str(tmp_path / 'o.png')], cwd=ROOT, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert_one_line_error(proc.stderr, path)
    assert 'MICRONET_MM_MAX_IMAGE_PIXELS' in proc.stderr
