"""Writing files without losing the user's: refuse to replace what exists unless ``--force``,
and write atomically (a unique temp name in the same folder, then ``os.replace``).

Every tool of this project that writes a file goes through :func:`refuse_overwrite` (before any
work is done) and :func:`atomic_write` (for the write itself). A reader, or a process killed in
the middle, therefore sees either the old file or the complete new one, never half of it. A
temp file is made with :func:`tempfile.mkstemp`, so an existing file of that name is never
reused or replaced; it is removed when the write fails (a ``kill -9`` can leave one behind,
named ``.<name>.<random>.partial<ext>``).
"""
from __future__ import annotations

import contextlib
import glob
import os
import os.path as osp
import shutil
import tempfile
from collections.abc import Iterator

from .errors import UserError


def refuse_overwrite(path: str, force: bool, flag: str = '--force') -> None:
    """Raise :class:`UserError` if ``path`` exists and ``force`` is false.

    Args:
        path: the output the tool is about to write.
        force: the user asked to replace it.
        flag: the option that gives ``force``, named in the message.

    Raises:
        UserError: ``path`` exists (and ``force`` is false), or it is a directory.
    """
    if osp.isdir(path):
        raise UserError(f'{path} is a directory; give the path of a file to write')
    if osp.lexists(path) and not force:
        raise UserError(f'{path} exists; not overwriting it. Choose another output path, '
                        f'or pass {flag} to replace it.')


def current_umask() -> int:
    """The process's umask (read by setting and restoring it)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _temp_beside(path: str) -> tuple[int, str]:
    """A new file next to ``path`` (folders made as needed), named
    ``.<stem>.<random>.partial<ext>`` by :func:`tempfile.mkstemp` (``O_EXCL``: never an existing
    file), with the permissions a plain ``open`` would give; returns ``(descriptor, path)``."""
    folder = osp.dirname(osp.abspath(path))
    os.makedirs(folder, exist_ok=True)
    stem, ext = osp.splitext(osp.basename(path))
    fd, tmp = tempfile.mkstemp(prefix=f'.{stem}.', suffix=f'.partial{ext}', dir=folder)
    os.fchmod(fd, 0o666 & ~current_umask())  # mkstemp makes 0600
    return fd, tmp


@contextlib.contextmanager
def _replace_on_success(tmp: str, path: str) -> Iterator[None]:
    """Move ``tmp`` onto ``path`` when the block succeeds; remove ``tmp`` when it raises."""
    try:
        yield
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise


@contextlib.contextmanager
def atomic_write(path: str) -> Iterator[str]:
    """Yield a fresh temp path next to ``path``; on success move it onto ``path``.

    The temp name keeps ``path``'s extension (writers that choose the format from it, such as
    ``mmcv.imwrite`` or PIL, still work). Folders are made as needed. On any exception the
    temp file is removed and ``path`` is left as it was.

    Args:
        path: the file to write.

    Yields:
        The temp file's path; write the content there (it exists, empty).
    """
    fd, tmp = _temp_beside(path)
    os.close(fd)
    with _replace_on_success(tmp, path):
        yield tmp


@contextlib.contextmanager
def atomic_file(path: str, mode: str = 'wb') -> Iterator:
    """Like :func:`atomic_write`, but yield the temp file open for writing: the file that
    :func:`tempfile.mkstemp` created (``O_EXCL``, ``O_NOFOLLOW``) is written through its own
    descriptor, never opened again by name, so nothing put at the temp name in the meantime
    (a symlink) is followed.

    Args:
        path: the file to write.
        mode: ``'wb'`` or ``'w'`` (text, UTF-8).
    """
    if mode not in ('wb', 'w'):
        raise ValueError(f'atomic_file: mode {mode!r} is not "wb" or "w"')
    fd, tmp = _temp_beside(path)
    with _replace_on_success(tmp, path):
        with os.fdopen(fd, mode, **({'encoding': 'utf-8'} if mode == 'w' else {})) as f:
            yield f


def copy_atomic(source: str, path: str) -> None:
    """Copy the file ``source`` to ``path`` through :func:`atomic_file` (a symlink at ``path``
    is replaced, its target never written)."""
    with open(source, 'rb') as src, atomic_file(path) as dst:
        shutil.copyfileobj(src, dst)
        os.fchmod(dst.fileno(), os.stat(src.fileno()).st_mode & 0o777)


@contextlib.contextmanager
def atomic_image_writes() -> Iterator[None]:
    """While active, ``mmcv.imwrite`` and ``cv2.imwrite`` write through :func:`atomic_write`:
    what the toolboxes' visualization hooks and mmengine's ``LocalVisBackend`` draw
    (``tools/test.py --show-dir``) never follows a symlink at an image's name."""
    import cv2
    import mmcv
    import mmcv.image
    original_cv2, original_mmcv = cv2.imwrite, mmcv.imwrite

    def cv2_imwrite(filename, img, *args, **kwargs):
        with atomic_write(os.fspath(filename)) as tmp:
            if not original_cv2(tmp, img, *args, **kwargs):
                raise OSError(f'cannot write image {filename}')
        return True

    def mmcv_imwrite(img, file_path, *args, **kwargs):
        with atomic_write(os.fspath(file_path)) as tmp:
            if not original_mmcv(img, tmp, *args, **kwargs):
                raise OSError(f'cannot write image {file_path}')
        return True

    cv2.imwrite, mmcv.imwrite, mmcv.image.imwrite = cv2_imwrite, mmcv_imwrite, mmcv_imwrite
    try:
        yield
    finally:
        cv2.imwrite, mmcv.imwrite, mmcv.image.imwrite = original_cv2, original_mmcv, \
            original_mmcv


def refuse_used_work_dir(work_dir: str, *, resume: bool, force: bool) -> None:
    """Refuse to train into a work dir that holds checkpoints, unless resuming or forced.

    mmengine writes ``epoch_N.pth`` / ``iter_N.pth`` and ``last_checkpoint`` straight into the
    work dir; a second run would replace the first run's files.

    Args:
        work_dir: the run's work dir.
        resume: ``--resume`` was given (the run continues the checkpoints found there).
        force: ``--force`` was given (the user accepts that they are replaced).

    Raises:
        UserError: the dir holds ``*.pth`` files or ``last_checkpoint``.
    """
    if resume or force or not osp.isdir(work_dir):
        return
    found = sorted(osp.basename(p) for p in glob.glob(osp.join(glob.escape(work_dir), '*.pth')))
    if osp.exists(osp.join(work_dir, 'last_checkpoint')):
        found.append('last_checkpoint')
    if found:
        shown = ', '.join(found[:3]) + (f' and {len(found) - 3} more' if len(found) > 3 else '')
        raise UserError(f'work dir {work_dir} already holds checkpoints ({shown}). Pass '
                        '--resume to continue that run, --force to overwrite them, or choose '
                        'another --work-dir.')
