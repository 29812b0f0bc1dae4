"""One image loader for every API (micronet_mm/apis/image.py): the pose and segmentation APIs
read files and arrays by the same rules."""
import numpy as np
import pytest
from PIL import Image

from micronet_mm.apis import load_rgb_image
from micronet_mm.apis.pose import load_image as pose_bgr


def as_rgb_by(api: str, image):
    """What the pose or the segmentation API makes of ``image``, as RGB."""
    if api == 'pose':
        return pose_bgr(image)[..., ::-1]
    return load_rgb_image(image)


APIS = ['pose', 'seg']
RGB = np.random.default_rng(0).integers(0, 256, (6, 5, 3), dtype=np.uint8)


@pytest.mark.parametrize('api', APIS)
@pytest.mark.parametrize('image, want', [
    (RGB, RGB),
    (RGB[..., 0], np.repeat(RGB[..., :1], 3, axis=2)),  # grayscale
    (RGB[..., :1], np.repeat(RGB[..., :1], 3, axis=2)),  # (H, W, 1)
    (np.concatenate([RGB, np.zeros((6, 5, 1), np.uint8)], 2), RGB),  # RGBA: alpha dropped
    (RGB / 255.0, RGB),  # floats in [0, 1]
    (RGB.astype(np.int64), RGB),  # integers in 0..255
])
def test_arrays_read_alike(api, image, want):
    got = as_rgb_by(api, image)
    assert got.dtype == np.uint8 and got.shape == want.shape
    assert np.array_equal(got, want)


@pytest.mark.parametrize('api', APIS)
@pytest.mark.parametrize('image, error, match', [
    (np.full((4, 4, 3), 1000, np.int32), ValueError, r'0\.\.255'),  # refused, never clipped
    (np.full((4, 4, 3), -1, np.int16), ValueError, r'0\.\.255'),
    (np.zeros((10, 10, 2), np.uint8), ValueError, r'\(H, W, 3\)'),
    (np.zeros((0, 10, 3), np.uint8), ValueError, 'empty'),
    (12, TypeError, 'file path or a numpy array'),
])
def test_bad_arrays_refused_alike(api, image, error, match):
    with pytest.raises(error, match=match):
        as_rgb_by(api, image)


@pytest.mark.parametrize('api', APIS)
def test_files_read_alike(api, tmp_path):
    Image.fromarray(RGB).save(tmp_path / 'rgb.png')
    Image.fromarray(RGB).convert('P').save(tmp_path / 'palette.png')
    ramp = (np.arange(30, dtype=np.uint16).reshape(6, 5) * 2000)
    Image.fromarray(ramp).save(tmp_path / 'gray16.png')
    assert np.array_equal(as_rgb_by(api, tmp_path / 'rgb.png'), RGB)
    palette = np.asarray(Image.open(tmp_path / 'palette.png').convert('RGB'))
    assert np.array_equal(as_rgb_by(api, str(tmp_path / 'palette.png')), palette)
    gray = as_rgb_by(api, tmp_path / 'gray16.png')
    assert np.array_equal(gray[..., 0], np.round(ramp * (255 / 65535)).astype(np.uint8))
    (tmp_path / 'junk.png').write_bytes(b'not an image')
    with pytest.raises(ValueError, match='cannot read image file .*junk.png'):
        as_rgb_by(api, tmp_path / 'junk.png')
    with pytest.raises(FileNotFoundError, match='image file not found: .*nope.png'):
        as_rgb_by(api, tmp_path / 'nope.png')
