"""Write a generated demo dataset once, atomically, and never over somebody else's data.

A dataset is built in a fresh temp dir next to ``root`` (``tempfile.mkdtemp``: a unique name,
so a user's folder is never reused or removed) and renamed into place. It carries ``VERSION``
and ``MANIFEST``: the SHA-256 of every file we wrote. An older version is replaced only if the
folder holds exactly those files with those contents; a folder with anything else in it (a
user's notes, an edited image, no manifest) is refused, and only ``force=True`` replaces it.
"""
from __future__ import annotations

import hashlib
import os
import os.path as osp
import shutil
import tempfile
from collections.abc import Callable

from ..errors import UserError
from ..fileio import current_umask

STAMP, MANIFEST = 'VERSION', 'MANIFEST'


class DemoDataExistsError(UserError, FileExistsError):
    """The target folder holds data that we did not write (or changed since)."""


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(1 << 20), b''):
            digest.update(block)
    return digest.hexdigest()


def _listing(root: str) -> dict[str, str]:
    """``{relative path: sha256}`` of every file under ``root`` but VERSION and MANIFEST."""
    found = {}
    for folder, _, files in os.walk(root):
        for name in files:
            rel = osp.relpath(osp.join(folder, name), root)
            if rel not in (STAMP, MANIFEST):
                found[rel] = _sha256(osp.join(folder, name))
    return found


def _is_unchanged(root: str) -> bool:
    """Whether ``root`` holds exactly the files its MANIFEST lists, with those contents."""
    manifest = osp.join(root, MANIFEST)
    if not osp.isfile(manifest):
        return False
    with open(manifest) as f:
        listed = dict(line.rstrip('\n').split('  ', 1)[::-1] for line in f if line.strip())
    return _listing(root) == listed


def _read_version(root: str) -> str | None:
    stamp = osp.join(root, STAMP)
    if not osp.isfile(stamp):
        return None
    with open(stamp) as f:
        return f.read()


def write_once(root: str, version: str, fill: Callable[[str], None], *,
               force: bool = False) -> str:
    """Return ``root`` if it holds this ``version`` of the data; else build it with
    ``fill(tmp_dir)`` in a fresh sibling temp dir and move it into place.

    Args:
        root: the dataset folder.
        version: the data's version; a folder with another one is rebuilt.
        fill: writes the files into the folder it is given.
        force: replace ``root`` even if it holds files we did not write.

    Raises:
        DemoDataExistsError: ``root`` exists and is not an unchanged demo dataset of ours.
    """
    root = osp.normpath(root)
    if _read_version(root) == version and not force:
        return root
    if osp.lexists(root) and not force and not _is_unchanged(root):
        what = ('is not a demo dataset' if _read_version(root) is None else
                'holds files that this tool did not write, or changed them')
        raise DemoDataExistsError(
            f'{root} exists and {what}; not touching it. Move it away, pass another root, '
            'or pass --force (force=True) to replace it.')
    parent = osp.dirname(osp.abspath(root))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f'.{osp.basename(root)}.', suffix='.partial', dir=parent)
    try:
        fill(tmp)
        with open(osp.join(tmp, MANIFEST), 'w') as f:
            f.writelines(f'{sha}  {rel}\n' for rel, sha in sorted(_listing(tmp).items()))
        with open(osp.join(tmp, STAMP), 'w') as f:
            f.write(version)
        os.chmod(tmp, 0o777 & ~current_umask())  # mkdtemp makes 0700
        if osp.lexists(root):  # checked above: ours and unchanged, or force
            trash = tempfile.mkdtemp(prefix=f'.{osp.basename(root)}.', suffix='.old',
                                     dir=parent)
            os.rename(root, osp.join(trash, 'old'))
            os.rename(tmp, root)
            shutil.rmtree(trash)
        else:
            os.rename(tmp, root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return root

