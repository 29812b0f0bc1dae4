"""Write a generated demo dataset once, atomically, and never over somebody else's data."""
from __future__ import annotations

import os
import os.path as osp
import shutil
from collections.abc import Callable


def write_once(root: str, version: str, fill: Callable[[str], None]) -> str:
    """Return ``root`` if it holds this ``version`` of the data; else build it with
    ``fill(tmp_dir)`` in a sibling temp dir and move it into place.

    Raises:
        FileExistsError: ``root`` exists and is not one of our demo datasets.
    """
    stamp = osp.join(root, 'VERSION')
    if osp.isfile(stamp) and open(stamp).read() == version:
        return root
    if osp.exists(root) and not osp.isfile(stamp):
        raise FileExistsError(f'{root} exists and is not a demo dataset; not touching it')
    tmp = root.rstrip('/') + '.partial'
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    fill(tmp)
    with open(osp.join(tmp, 'VERSION'), 'w') as f:
        f.write(version)
    shutil.rmtree(root, ignore_errors=True)
    os.replace(tmp, root)
    return root
