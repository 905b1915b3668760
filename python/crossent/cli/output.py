"""Files the command writes: checked before a run so that no operand is overwritten, written
under a temporary name and renamed into place only when complete."""

from __future__ import annotations

import contextlib
import math
import os
import stat
import tempfile
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from crossent.cli.errors import CliError, reason


def same_file(a: os.stat_result, b: os.stat_result) -> bool:
    """Whether two ``os.stat`` results (links followed) describe one file: same device and
    inode, which also holds for two hard links and for two paths through symbolic links."""
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def check_output(option: str, path: str, operands: Sequence[tuple[str, str, str]]) -> None:
    """Refuses an output ``path`` that is a directory or the same file as an operand:
    ``operands`` holds (option, spec, file path) triples. Files are compared by identity
    (device and inode after following links), not by name."""
    try:
        out = os.stat(path)
    except FileNotFoundError:
        return  # a new file (or a link to one) cannot be an operand
    except OSError as e:
        raise CliError(f"{option} {path}: cannot write ({e.strerror or e})") from None
    if stat.S_ISDIR(out.st_mode):
        raise CliError(f"{option} {path}: is a directory")
    for arg, spec, file in operands:
        try:
            st = os.stat(file)
        except OSError:
            continue
        if same_file(st, out):
            raise CliError(
                f"{option} {path} is the same file as {arg} {spec}; writing it would destroy "
                "the input: choose another output path"
            )


@contextlib.contextmanager
def atomic_output(option: str, path: str) -> Iterator[str]:
    """A temporary path beside ``path`` (in the directory of the file it names, links
    followed) to write the output to. When the block ends without an exception the temporary
    file is renamed over ``path`` (atomically, keeping an existing file's permissions); on any
    exception, ``KeyboardInterrupt`` included, it is removed and ``path`` is left untouched."""
    dest = os.path.realpath(path)
    folder, name = os.path.split(dest)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=folder or ".")
    except OSError as e:
        raise CliError(f"{option} {path}: cannot write ({e.strerror or e})") from None
    os.close(fd)
    try:
        yield tmp
        try:
            mode = stat.S_IMODE(os.stat(dest).st_mode)
        except FileNotFoundError:
            umask = os.umask(0)
            os.umask(umask)
            mode = 0o666 & ~umask
        os.chmod(tmp, mode)
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


class NpyWriter:
    """Writes a ``.npy`` file front to back: a header of a length fixed up front (enough for
    any shape with ``ndim`` dimensions), the data batch by batch, then, in :meth:`finish`,
    the header with the shape written (so the length of a stream need not be known)."""

    def __init__(self, path: str, dtype: np.dtype[Any], ndim: int) -> None:
        self.dtype = np.dtype(dtype)
        self.descr = np.lib.format.dtype_to_descr(self.dtype)
        self.size = len(self._header((2**63,) * max(ndim, 1)))
        self.count = 0
        self.file = open(path, "wb")  # closed by close()
        self.file.write(b"\0" * self.size)

    def _header(self, shape: tuple[int, ...], size: int | None = None) -> bytes:
        body = repr({"descr": self.descr, "fortran_order": False, "shape": shape}).encode()
        need = len(np.lib.format.MAGIC_PREFIX) + 4 + len(body) + 1
        size = size if size is not None else -(-need // 64) * 64
        if need > size or size - 10 > 0xFFFF:
            raise CliError(f"cannot write a .npy header for shape {shape}")
        return (
            np.lib.format.MAGIC_PREFIX
            + bytes((1, 0))
            + (size - 10).to_bytes(2, "little")
            + body
            + b" " * (size - need)
            + b"\n"
        )

    def write(self, batch: np.ndarray) -> None:
        assert batch.dtype == self.dtype and batch.flags.c_contiguous
        self.file.write(batch.data.cast("B"))
        self.count += batch.size

    def finish(self, shape: tuple[int, ...]) -> None:
        """Writes the header for ``shape`` (which must hold what was written) and syncs."""
        if math.prod(shape) != self.count:
            raise CliError(f"wrote {self.count} losses, expected shape {shape}")
        self.file.seek(0)
        self.file.write(self._header(shape, self.size))
        self.file.flush()
        os.fsync(self.file.fileno())

    def close(self) -> None:
        self.file.close()


@contextlib.contextmanager
def npy_output(output: str | None, dtype: np.dtype[Any], ndim: int) -> Iterator[NpyWriter | None]:
    """The writer of ``--output``, or ``None`` without one. The file is written under a
    temporary name beside the destination and renamed over it only when the run succeeds."""
    if output is None:
        yield None
        return
    with atomic_output("--output", output) as tmp:
        try:
            writer = NpyWriter(tmp, dtype, ndim)
        except OSError as e:
            raise CliError(f"--output {output}: cannot write ({reason(e)})") from None
        try:
            yield writer
        finally:
            writer.close()
