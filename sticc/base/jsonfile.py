"""Files out: outputs written atomically and durably (a reader, or a machine that loses power,
never sees half a file or half a set). Files in are read through `sticc.base.schema`.

Every output is written under a unique hidden temporary name beside its target (two writers never
share one), flushed and fsynced, renamed into place, and its directory fsynced so the rename
itself survives a crash. A directory (a store, a compile output) is staged complete in a hidden
sibling and swapped in whole by `replace_dir`.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import functools
import json
import os
import secrets
import shutil
from collections.abc import Iterable
from pathlib import Path

from sticc.base.errors import UserError

TEMP_SUFFIX = ".sticc-tmp"  # every temporary file or directory sticc stages ends in this


def fsync_dir(path: str | Path) -> None:
    """fsync the directory `path`, making its entries (a rename into it, a new file) durable.
    Skipped where directories cannot be opened (Windows) or a filesystem refuses (EINVAL)."""
    if os.name == "nt":
        return
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    except OSError as error:
        if error.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EBADF):
            raise
    finally:
        os.close(fd)


def fsync_file(path: str | Path) -> None:
    """fsync a file already written (a copy made by shutil, say)."""
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def _temp_name(path: Path) -> Path:
    """A fresh hidden sibling name for staging `path` (random: two writers never collide)."""
    return path.with_name(f".{path.name}.{secrets.token_hex(6)}{TEMP_SUFFIX}")


def _write_temp(path: Path, data: bytes) -> Path:
    """Write `data` to a new unique sibling of `path`, fsynced; return its name. The file is
    created exclusively with the usual mode (0o666 less the umask, as a plain open gives)."""
    while True:
        temp = _temp_name(path)
        try:
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
            break
        except FileExistsError:
            continue
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        _unlink_quietly(temp)
        raise
    return temp


def _unlink_quietly(path: Path) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)


def write_bytes_atomic(path: str | Path, data: bytes) -> None:
    """Write `data` to `path` durably: a unique temporary sibling, fsynced, renamed over `path`,
    then the directory fsynced. Never half a file; concurrent writers each leave a whole one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = _write_temp(path, data)
    try:
        os.replace(temp, path)
    except BaseException:
        _unlink_quietly(temp)
        raise
    fsync_dir(path.parent)


def write_json_atomic(path: str | Path, data: dict) -> None:
    """Write JSON to `path` atomically and durably (`write_bytes_atomic`): never half a file."""
    write_bytes_atomic(path, (json.dumps(data, indent=1, sort_keys=True) + "\n").encode("utf-8"))


def write_files_atomic(out_dir: str | Path, files: dict[str, str]) -> list[Path]:
    """Write the text `files` {name: text} into `out_dir`, other files there untouched: all are
    staged (unique names, fsynced) before the first is renamed into place, then the directory is
    fsynced, so an error leaves the old files, never half-written ones. A crash between the renames
    can leave some files new and some old, each whole: for a set that must change together, stage
    the whole directory (`write_dir_atomic`)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    staged: dict[str, Path] = {}
    try:
        for name, text in files.items():
            staged[name] = _write_temp(out_dir / name, text.encode("utf-8"))
        for name, temp in staged.items():
            os.replace(temp, out_dir / name)
    finally:
        for temp in staged.values():
            if temp.exists():
                _unlink_quietly(temp)
    fsync_dir(out_dir)
    return [out_dir / name for name in files]


# ----------------------------------------------------------------------------------------------
# Durable directories
# ----------------------------------------------------------------------------------------------

AT_FDCWD = -100
RENAME_EXCHANGE = 2  # linux/fs.h


@functools.cache
def _renameat2():
    """libc's renameat2 (glibc 2.28+, Linux), or None where there is none."""
    try:
        function = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError, TypeError):
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    function.restype = ctypes.c_int
    return function


def exchange_paths(a: Path, b: Path) -> bool:
    """Swap the entries `a` and `b` in one atomic step (renameat2 with RENAME_EXCHANGE); False,
    with nothing changed, where the platform, kernel or filesystem has no such call."""
    renameat2 = _renameat2()
    if renameat2 is None:
        return False
    if renameat2(AT_FDCWD, os.fsencode(a), AT_FDCWD, os.fsencode(b), RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP):
        return False
    raise OSError(code, os.strerror(code), str(a), None, str(b))


def _remove_tree(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        _unlink_quietly(path)


def replace_dir(staging: str | Path, out: str | Path) -> None:
    """Put the finished directory `staging` (a sibling of `out`, its files fsynced) at `out`, then
    fsync the parent. An existing `out` is swapped with `staging` in one atomic step (Linux
    renameat2 RENAME_EXCHANGE): there is no moment without `out`, and readers see the old tree or
    the new one. The old tree, now at the staging name, is removed after. Where the exchange is
    missing (other platforms, old kernels, some filesystems) it falls back to two renames, with a
    short gap in which `out` does not exist (never a mixed or partial `out`)."""
    staging, out = Path(staging), Path(out)
    fsync_dir(staging)
    if not os.path.lexists(out):
        os.replace(staging, out)
        fsync_dir(out.parent)
        return
    if exchange_paths(staging, out):
        old = staging
    else:  # the gap: `out` is absent between these two renames
        old = _temp_name(out)
        os.replace(out, old)
        os.replace(staging, out)
    fsync_dir(out.parent)
    _remove_tree(old)


def make_staging_dir(out: Path) -> Path:
    """A new empty hidden sibling of `out` to stage its replacement in (the usual mode: 0o777 less
    the umask)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    while True:
        staging = _temp_name(out)
        try:
            staging.mkdir()
            return staging
        except FileExistsError:
            continue


def _link_or_copy(source: str, target: str) -> None:
    try:
        os.link(source, target, follow_symlinks=False)
    except OSError:
        shutil.copy2(source, target, follow_symlinks=False)
        fsync_file(target)


def _carry(source: Path, target: Path) -> None:
    """Bring `source` (a user's file or folder) into the staged `target`: hard links where possible."""
    if source.is_symlink():
        os.symlink(os.readlink(source), target)
    elif source.is_dir():
        shutil.copytree(source, target, symlinks=True, copy_function=_link_or_copy)
        for folder, _, _ in os.walk(target):
            fsync_dir(folder)
    else:
        _link_or_copy(str(source), str(target))


def write_dir_atomic(out_dir: str | Path, files: dict[str, str], markers: Iterable[str], owned: Iterable[str], what: str) -> None:
    """Replace the directory `out_dir` as a whole by one holding the text `files` {name: text}:
    staged complete in a hidden sibling (files fsynced), then `replace_dir`. A reader, or a crash
    at any point, finds the old directory or the new one, never a mix.

    An existing `out_dir` must be empty or hold one of the `markers` (it is `what`, e.g. "a sticc
    output"); anything else is refused with a UserError. Its entries other than `owned` names (the
    files this writer makes; an old one not written again is dropped), Python caches and sticc's
    own temporary names are carried into the new directory (hard links where possible): a user's
    file there survives. A symlink `out_dir` is followed: its target directory is replaced."""
    out = Path(os.path.realpath(out_dir))
    if out.exists() and not out.is_dir():
        raise UserError(f"{out_dir} exists and is not a directory; refusing to overwrite it")
    keep: list[Path] = []
    if out.is_dir():
        entries = list(out.iterdir())
        if entries and not any((out / marker).exists() for marker in markers):
            raise UserError(f"{out_dir} exists and is not {what}; refusing to replace it")
        dropped = set(owned) | set(files) | {"__pycache__"}
        keep = [e for e in entries if e.name not in dropped and not e.name.endswith(TEMP_SUFFIX) and not e.name.startswith(".sticc-write-")]
    staging = make_staging_dir(out)
    try:
        if out.is_dir():
            with contextlib.suppress(OSError):  # the old directory's mode, where it had another
                os.chmod(staging, out.stat().st_mode & 0o7777)
        for name, text in files.items():
            with open(staging / name, "wb") as handle:
                handle.write(text.encode("utf-8"))
                handle.flush()
                os.fsync(handle.fileno())
        for entry in keep:
            _carry(entry, staging / entry.name)
        replace_dir(staging, out)
    except BaseException:
        _remove_tree(staging)
        raise
