"""Atomic writes: a reader sees the old file or the complete new one, never half of either.

Files and directories get the modes a plain ``open``/``mkdir`` would give under the umask (0644/0755
under umask 022): ``mkstemp``/``mkdtemp`` create them private, and that would survive the rename,
leaving exports unreadable to TF Serving running as another user.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sentiment_tf.core.errors import UserError


def umask() -> int:
    """The process umask, read without changing it where Linux allows (os.umask can only swap)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    old = os.umask(0o022)
    os.umask(old)
    return old


def file_mode() -> int:
    return 0o666 & ~umask()


def dir_mode() -> int:
    return 0o777 & ~umask()


def check_writable(path: str | Path, option: str, directory: bool = False) -> None:
    """Refuses, before any work, an output whose nearest existing parent is not a writable directory
    (by trying: permission bits say nothing for root or read-only mounts)."""
    target = Path(path)
    if target.exists() and (target.is_dir() != directory):
        raise UserError(f"{option} {path} is a {'file' if directory else 'directory'}; pass a "
                        f"{'directory' if directory else 'file path'}")
    probe = target if directory and target.is_dir() else target.parent
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise UserError(f"{option} {path}: {probe} is a file, not a directory")
    try:
        fd, tmp = tempfile.mkstemp(prefix=".write-check-", dir=probe)
        os.close(fd)
        os.unlink(tmp)
    except OSError as err:
        raise UserError(f"{option} {path}: cannot write in {probe} ({err.strerror}); choose a writable "
                        "location") from None


def check_new_directory(path: str | Path, option: str) -> None:
    """``path`` is a directory to create whole: new, or empty, and writable (checked before any work)."""
    path = Path(path)
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise UserError(f"{option} {path}: exists and is not an empty directory; choose a new one")
    check_writable(path, option, directory=True)


def write_bytes(path: str | Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, file_mode())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_text(path: str | Path, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def write_json(path: str | Path, obj: Any) -> None:
    write_text(path, json.dumps(obj, ensure_ascii=False, indent=2, default=str) + "\n")


@contextlib.contextmanager
def temp_dir_beside(target_parent: str | Path, prefix: str) -> Iterator[Path]:
    """A hidden temporary directory in ``target_parent`` (same filesystem, so rename is atomic), with
    the umask's normal directory mode.

    Removed on any failure; on success the caller must have renamed it away (or it is removed).
    """
    parent = Path(target_parent)
    parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f"{prefix}{os.getpid()}@{socket.gethostname()}-", dir=parent))
    os.chmod(tmp, dir_mode())
    try:
        yield tmp
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def remove_stale_temp_dirs(parent: str | Path, prefix: str) -> list[Path]:
    """Removes :func:`temp_dir_beside` leftovers of killed processes: those whose owner (pid and host
    in the name) is no longer running on this host. Others' live work and other hosts' are left alone."""
    parent, removed = Path(parent), []
    if not parent.is_dir():
        return removed
    host = socket.gethostname()
    for entry in parent.iterdir():
        match = re.fullmatch(re.escape(prefix) + r"(\d+)@(.+)-[^-]+", entry.name)
        if not match or match.group(2) != host or not entry.is_dir():
            continue
        try:
            os.kill(int(match.group(1)), 0)
        except ProcessLookupError:
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry)
        except PermissionError:
            pass  # alive, another user's
    return removed


def savefig(fig: Any, path: str | Path) -> None:
    """Saves a matplotlib figure atomically."""
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format=Path(path).suffix.lstrip(".") or "png", dpi=120, bbox_inches="tight")
    write_bytes(path, buf.getvalue())
