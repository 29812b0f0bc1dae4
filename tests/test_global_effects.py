"""What ``import micronet_mm`` changes in the process (README, "Safety"): torch's safe globals
gain our guarded entries and lose nothing, mmengine's checkpoint loader is wrapped once, and a
second install changes nothing more. Each case runs in a fresh interpreter, so that nothing
imported by other tests is already set up."""
import json
import subprocess
import sys

from conftest import ROOT

PROBE = r'''
import json, numpy, torch
import torch.serialization as ts

class Mine:  # a safe global of the user's own, registered before micronet_mm is imported
    pass

ts.add_safe_globals([Mine, (print, 'my.print'), numpy.dtype])  # numpy.dtype: raw, unguarded
from mmengine.runner.checkpoint import CheckpointLoader  # mmengine adds entries of its own
plain = CheckpointLoader.load_checkpoint.__func__
before = list(ts.get_safe_globals())
import micronet_mm
after = list(ts.get_safe_globals())
wrapped = CheckpointLoader.load_checkpoint.__func__
micronet_mm.install()
micronet_mm.install()
import micronet_mm.checkpoint as ck
print(json.dumps(dict(
    kept=all(g in after for g in before),
    mine=Mine in after and (print, 'my.print') in after and numpy.dtype in after,
    ours=all(g in after for g in ck.mmengine_safe_globals()),
    added=len(after) - len(before),
    ours_count=len(ck.mmengine_safe_globals()),
    again=list(ts.get_safe_globals()) == after,
    loader_wrapped=wrapped is not plain and getattr(wrapped, '_micronet_safe', False),
    loader_again=CheckpointLoader.load_checkpoint.__func__ is wrapped,
)))
'''


def probe(code: str = PROBE) -> dict:
    out = subprocess.run([sys.executable, '-c', code], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_import_keeps_other_safe_globals_and_adds_ours_once():
    res = probe()
    assert res['kept'] and res['mine']
    assert res['ours'] and res['added'] == res['ours_count']
    assert res['again']


def test_import_wraps_the_mmengine_loader_once():
    res = probe()
    assert res['loader_wrapped'] and res['loader_again']


def test_import_does_not_import_the_toolboxes():
    """``import micronet_mm`` registers no model and imports no toolbox: that is
    ``micronet_mm.models``' job, which the configs' ``custom_imports`` name."""
    res = probe('import json, sys, micronet_mm\n'
                'print(json.dumps({m: m in sys.modules for m in ("mmpretrain", "mmdet", '
                '"mmseg", "mmpose", "micronet_mm.models", "micronet_mm.deploy")}))')
    assert not any(res.values()), res
