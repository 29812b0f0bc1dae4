"""Write a generated demo dataset once, atomically, and never over somebody else's data.

A dataset is built in a fresh temp dir next to ``root`` (``tempfile.mkdtemp``: a unique name,
so a user's folder is never reused or removed) and renamed into place. It carries ``VERSION``
and ``MANIFEST``: the SHA-256 of every file we wrote. An older version is replaced only if the
folder holds exactly those files with those contents; a folder with anything else in it (a
user's notes, an edited image, an empty folder, a symlink, a FIFO, no manifest) is refused, and
only ``force=True`` replaces it. Only regular files are ever opened: a symlink, FIFO or device in
the folder (or the folder itself a symlink) refuses without being read.
"""
from __future__ import annotations

import hashlib
import os
import os.path as osp
import shutil
import stat
import tempfile
from collections.abc import Callable

from ..errors import UserError
from ..fileio import current_umask

STAMP, MANIFEST = 'VERSION', 'MANIFEST'


class DemoDataExistsError(UserError, FileExistsError):
    """The target folder holds data that we did not write (or changed since)."""


def _read_regular(path: str) -> bytes | None:
    """The bytes of ``path`` if it is a regular file (not a symlink, FIFO, device or folder);
    else ``None``. Anything else is never opened (a FIFO would block)."""
    try:
        if not stat.S_ISREG(os.lstat(path).st_mode):
            return None
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    with os.fdopen(fd, 'rb') as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):  # replaced since the lstat
            return None
        return f.read()


def _sha256(path: str) -> str | None:
    data = _read_regular(path)
    return None if data is None else hashlib.sha256(data).hexdigest()


def _listing(root: str) -> dict[str, str | None] | None:
    """``{relative path: sha256}`` of every file under ``root`` but VERSION and MANIFEST;
    ``None`` if ``root`` holds anything but folders and regular files (a symlink, a FIFO, a
    socket, a device), which is never opened. Empty folders are listed as ``'<folder>/'``."""
    found = {}
    for folder, dirs, files in os.walk(root):  # does not follow symlinks to folders
        for name in dirs:
            if os.path.islink(osp.join(folder, name)):
                return None
        if not dirs and not files and folder != root:
            found[osp.relpath(folder, root) + '/'] = None  # never in a manifest
        for name in files:
            rel = osp.relpath(osp.join(folder, name), root)
            digest = _sha256(osp.join(folder, name))
            if digest is None:
                return None
            if rel not in (STAMP, MANIFEST):
                found[rel] = digest
    return found


def _is_unchanged(root: str) -> bool:
    """Whether ``root`` (a real folder, not a symlink) holds exactly the regular files its
    MANIFEST lists, with those contents, and nothing else."""
    if osp.islink(root) or not osp.isdir(root):
        return False
    manifest = _read_regular(osp.join(root, MANIFEST))
    if manifest is None:
        return False
    try:
        listed = dict(line.split('  ', 1)[::-1]
                      for line in manifest.decode('utf-8').splitlines() if line.strip())
    except (UnicodeDecodeError, ValueError):
        return False
    return _listing(root) == listed


def _read_version(root: str) -> str | None:
    data = _read_regular(osp.join(root, STAMP))
    try:
        return None if data is None else data.decode('utf-8')
    except UnicodeDecodeError:
        return None


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
            f.writelines(f'{sha}  {rel}\n' for rel, sha in sorted(_listing(tmp).items())
                         if sha is not None)
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

