"""Build steps that pyproject.toml cannot express (everything else is declared there).

A wheel (``pip install .``, ``pip wheel .``) carries, as OpenMMLab packages do:

- ``micronet_mm/.mim/``: copies of ``configs/``, ``tools/`` and ``model-index.yml``, made at
  build time from the checkout (never committed twice). ``micronet_mm.zoo.zoo_root()`` finds
  them there, or beside the package in a checkout.
- ``micronet_mm-startup.pth``: one line that runs ``micronet_mm_startup.install()`` at
  interpreter start. It imports nothing heavy; it waits until mmengine's checkpoint module is
  imported and then imports ``micronet_mm``, which allow-lists the types mmengine checkpoints
  hold, so a toolbox inferencer given only a checkpoint loads it (micronet_mm_startup.py).

The editable install (``pip install -e .``, tools/setup_env.sh) needs neither: the checkout
has configs/, tools/ and model-index.yml itself, and tools import micronet_mm.
"""
from __future__ import annotations

import os
import os.path as osp
import shutil

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = osp.dirname(osp.abspath(__file__))
MIM_CONTENT = ('configs', 'tools', 'model-index.yml')
STARTUP_PTH = ('micronet_mm-startup.pth',
               'import micronet_mm_startup; micronet_mm_startup.install()\n')


class BuildPyWithMim(build_py):
    """``build_py`` plus the ``.mim`` copies and the startup ``.pth`` (wheels only)."""

    def run(self) -> None:
        super().run()
        if getattr(self, 'editable_mode', False):
            return
        mim = osp.join(self.build_lib, 'micronet_mm', '.mim')
        for name in MIM_CONTENT:
            src, dst = osp.join(HERE, name), osp.join(mim, name)
            if osp.isdir(src):
                shutil.copytree(src, dst, dirs_exist_ok=True,
                                ignore=shutil.ignore_patterns('__pycache__', '*.pyc'))
            else:
                os.makedirs(mim, exist_ok=True)
                shutil.copy2(src, dst)
        name, line = STARTUP_PTH
        with open(osp.join(self.build_lib, name), 'w') as f:
            f.write(line)


setup(cmdclass={'build_py': BuildPyWithMim})
