"""Official checkpoints convert to ours with identical logits (fixture made by the official code,
see reference_state.py), and bad files get clear errors."""
import os.path as osp

import pytest
import torch

from conftest import ARCHS, OFFICIAL_REFERENCE as FIXTURE, ROOT, build_classifier
from micronet_mm.converters import ConversionError, convert_checkpoint
from micronet_mm.errors import UserError
from reference_state import make_input, make_state

CONVERTER = osp.join(ROOT, 'tools', 'model_converters', 'micronet_official_to_mmpretrain.py')


def official_state(arch):
    return make_state([(k, s) for k, s in FIXTURE[arch]['keys']])


@pytest.mark.parametrize('arch', ARCHS)
@pytest.mark.parametrize('wrap', ['plain', 'state_dict+module'])
def test_converted_model_reproduces_official_logits(arch, wrap, tmp_path):
    state = official_state(arch)
    if wrap != 'plain':
        state = {'state_dict': {f'module.{k}': v for k, v in state.items()}, 'epoch': 600}
    src, dst = tmp_path / 'official.pth', tmp_path / 'ours.pth'
    torch.save(state, src)
    from tools.model_converters.micronet_official_to_mmpretrain import main
    assert main([str(src), str(dst)]) == arch  # arch detected from the shapes
    model = build_classifier(arch)
    ckpt = torch.load(dst, weights_only=True)
    missing, unexpected = model.load_state_dict(ckpt['state_dict'], strict=True)
    assert not missing and not unexpected
    assert FIXTURE[arch]['params'] == sum(p.numel() for p in model.parameters())
    with torch.no_grad():
        logits = model(make_input(), mode='tensor')
    expected = torch.tensor(FIXTURE[arch]['logits'])
    torch.testing.assert_close(logits, expected, atol=1e-5, rtol=1e-5)
    assert expected.abs().max() > 0.1  # the comparison is not between near-zero numbers


def test_converter_does_not_overwrite(tmp_path):
    src, dst = tmp_path / 'official.pth', tmp_path / 'ours.pth'
    torch.save(official_state('m0'), src)
    dst.write_text('precious')
    from tools.model_converters.micronet_official_to_mmpretrain import main
    with pytest.raises(UserError, match='not overwriting'):
        main([str(src), str(dst)])
    assert dst.read_text() == 'precious'


def test_truncated_file_gives_clear_error(tmp_path):
    src = tmp_path / 'official.pth'
    torch.save(official_state('m0'), src)
    src.write_bytes(src.read_bytes()[:5000])
    from tools.model_converters.micronet_official_to_mmpretrain import main
    from micronet_mm.checkpoint import CheckpointError
    with pytest.raises(CheckpointError, match=r'cannot read checkpoint .*official\.pth: truncated'):
        main([str(src), str(tmp_path / 'out.pth')])


def test_wrong_keys_are_listed():
    state = official_state('m1')
    state['features.3.layers.4.conv.0.weight'] = torch.zeros(3, 3, 1, 1)  # wrong shape
    del state['features.5.layers.1.fc.0.weight']
    state['extra.weight'] = torch.zeros(1)
    with pytest.raises(ConversionError) as err:
        convert_checkpoint(state, 'm1')
    text = str(err.value)
    assert 'unexpected keys (1): extra.weight' in text
    assert 'missing keys (1): backbone.stages.3.0.act1.fc.0.weight' in text
    assert 'features.3.layers.4.conv.0.weight' in text and '(3, 3, 1, 1)' in text


def test_wrong_arch_is_rejected():
    with pytest.raises(ConversionError, match="does not match MicroNet arch 'm2'"):
        convert_checkpoint(official_state('m0'), 'm2')
    with pytest.raises(ConversionError, match='not an official MicroNet classifier'):
        convert_checkpoint({'a.weight': torch.zeros(1)})
