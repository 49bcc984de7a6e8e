"""Write-then-rename output files that can never clobber an input.

The codec's promise is that bad input loses nothing: a crash, a Ctrl-C or an
exception mid-sequence must not leave a half-written file under the target name,
and no command line mistake may write over the file being read.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

from dvc_edic.errors import InputError

# Permission bits a new regular file would get before the umask is applied.
_DEFAULT_FILE_MODE = 0o666

PathLike = str | os.PathLike[str]


def _current_umask() -> int:
    """The process umask, read without changing it when the OS allows that."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0)  # portable fallback; briefly racy with other threads
    os.umask(mask)
    return mask


def _same_path(a: Path, b: Path) -> bool:
    try:
        if os.path.samefile(a, b):  # catches hard links and symlinks
            return True
    except OSError:
        pass
    return a.resolve() == b.resolve()


def check_not_input(target: PathLike, inputs: Iterable[PathLike]) -> None:
    """Refuse an output path that is, or links to, one of the inputs."""
    target_path = Path(target)
    for source in inputs:
        if _same_path(target_path, Path(source)):
            raise InputError(f"{target}: refusing to write the output over the input file {source}")


def check_output_path(target: PathLike, *, overwrite: bool, inputs: Iterable[PathLike]) -> Path:
    """Validate an output path before anything is created, so failures cost nothing."""
    path = Path(target)
    check_not_input(path, inputs)
    if path.is_dir():
        raise InputError(f"{path}: is a directory, expected an output file name")
    if path.exists() and not overwrite:
        raise InputError(f"{path}: already exists; pass --force to replace it")
    directory = path.parent
    if not directory.is_dir():
        raise InputError(f"{path}: output directory {directory} does not exist")
    if not os.access(directory, os.W_OK | os.X_OK):
        raise InputError(f"{path}: output directory {directory} is not writable")
    return path


class AtomicFile:
    """A temporary file beside the target that becomes the target only on commit().

    The temporary lives in the target's directory so the final rename never
    crosses a filesystem and is atomic. abort() (or garbage collection of an
    uncommitted object) deletes it.

    As a context manager it yields the open binary file, commits when the block
    ends normally and aborts when it raises (Ctrl-C included), so no caller has
    to spell out the try/commit/abort that keeps a half-written file from ever
    taking the target's name::

        with AtomicFile(path, overwrite=True) as f:
            f.write(data)
    """

    def __init__(
        self, target: PathLike, *, overwrite: bool = False, inputs: Iterable[PathLike] = ()
    ) -> None:
        self.inputs = tuple(inputs)
        self.overwrite = overwrite
        self.target = check_output_path(target, overwrite=overwrite, inputs=self.inputs)
        try:
            fd, temp_name = tempfile.mkstemp(
                prefix=f".{self.target.name}.", suffix=".part", dir=self.target.parent
            )
        except OSError as exc:
            raise InputError(
                f"{self.target}: cannot create a file in {self.target.parent}: {exc.strerror}"
            ) from None
        self.temp_path = Path(temp_name)
        self.file: BinaryIO = os.fdopen(fd, "wb")
        self._done = False

    @property
    def closed(self) -> bool:
        return self._done

    def __enter__(self) -> BinaryIO:
        return self.file

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.commit()  # aborts by itself if the flush or the rename fails
        else:
            self.abort()

    def commit(self) -> None:
        """Flush to disk and move the temporary onto the target name."""
        if self._done:
            return
        try:
            self.file.flush()
            os.fsync(self.file.fileno())
            self.file.close()
            self._set_mode()
            check_not_input(self.target, self.inputs)  # the tree may have changed meanwhile
            self._move_into_place()
        except BaseException:
            self.abort()
            raise
        self._done = True
        self._sync_directory()

    def abort(self) -> None:
        """Throw the partial output away. Safe to call more than once."""
        if self._done:
            return
        self._done = True
        with contextlib.suppress(OSError):
            self.file.close()
        with contextlib.suppress(FileNotFoundError):
            self.temp_path.unlink()

    def _set_mode(self) -> None:
        # mkstemp makes 0600 files; give the output the mode a plain open() would,
        # or keep the mode of the file being replaced.
        try:
            mode = self.target.stat().st_mode & 0o7777
        except FileNotFoundError:
            mode = _DEFAULT_FILE_MODE & ~_current_umask()
        os.chmod(self.temp_path, mode)

    def _move_into_place(self) -> None:
        if self.overwrite:
            os.replace(self.temp_path, self.target)
            return
        # link() fails if the target appeared since we checked, so a file created
        # by someone else in the meantime is never replaced.
        try:
            os.link(self.temp_path, self.target)
        except FileExistsError:
            raise InputError(
                f"{self.target}: appeared while writing; not replacing it (pass --force)"
            ) from None
        except OSError:  # filesystems without hard links: check, then rename
            if self.target.exists():
                raise InputError(
                    f"{self.target}: appeared while writing; not replacing it (pass --force)"
                ) from None
            os.replace(self.temp_path, self.target)
            return
        self.temp_path.unlink()

    def _sync_directory(self) -> None:
        # Make the rename itself durable; not every OS lets a directory be opened.
        try:
            dir_fd = os.open(self.target.parent, os.O_RDONLY)
        except OSError:
            return
        try:
            os.fsync(dir_fd)
        except OSError:
            pass
        finally:
            os.close(dir_fd)

    def __del__(self) -> None:
        # An object dropped without commit() must not leave its temporary behind.
        with contextlib.suppress(Exception):
            self.abort()
