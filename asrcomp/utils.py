"""Small shared helpers: logging, atomic writes, clear input errors."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import sys
from pathlib import Path
from typing import Iterator

LOG_FORMAT = "%(asctime)s %(levelname)s [%(name)s] %(message)s"


class InputError(Exception):
    """Bad user input: the message names the file, the line and the fix."""

    def __init__(self, path, message: str, line: int | None = None, fix: str | None = None):
        where = f"{path}:{line}" if line is not None else f"{path}"
        text = f"{where}: {message}"
        if fix:
            text += f" (fix: {fix})"
        super().__init__(text)
        self.path = Path(path)
        self.line = line
        self._args = (path, message, line, fix)

    def __reduce__(self):  # so an error raised in a worker process reaches the parent intact
        return (InputError, self._args)


def read_text_lines(path: str | os.PathLike) -> list[str]:
    """The lines of a UTF-8 text file (without newlines); bytes that are not UTF-8 are an
    :class:`InputError` naming the line, not a raw ``UnicodeDecodeError``."""
    path = Path(path)
    data = path.read_bytes()
    try:
        return data.decode("utf-8").splitlines()
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise InputError(path, f"not UTF-8 text (byte 0x{data[e.start]:02x} at offset {e.start})", line,
                         "convert the file to UTF-8, e.g. iconv -f latin1 -t utf-8") from None


def run_command(func, *args) -> int:
    """Run a command's body: bad input is logged as one clear line and gives exit status 2."""
    try:
        func(*args)
    except InputError as e:
        logging.getLogger("asrcomp").error("%s", e)
        return 2
    return 0


def options_from_dict(cls, d: dict | None, where, what: str):
    """Build dataclass ``cls`` from a config mapping; unknown keys are an :class:`InputError`
    naming ``where`` (the config file) and listing the valid ``what`` options."""
    d = dict(d or {})
    unknown = set(d) - set(cls.__dataclass_fields__)
    if unknown:
        raise InputError(where, f"unknown {what} options {sorted(unknown)}",
                         fix=f"valid options: {sorted(cls.__dataclass_fields__)}")
    return cls(**d)


def setup_logging(log_file: str | os.PathLike | None = None, level: int = logging.INFO) -> None:
    """Log to stderr and, if given, to ``log_file`` (its directory is created)."""
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_file is not None:
        Path(log_file).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_file, mode="a"))
    logging.basicConfig(level=level, format=LOG_FORMAT, handlers=handlers, force=True)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only on success.

    Works for files and directories: whatever the caller creates at the
    temporary path replaces ``path`` when the block exits without an exception,
    and is removed otherwise, so ``path`` is never left half-written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    _remove(tmp)
    try:
        yield tmp
    except BaseException:
        _remove(tmp)
        raise
    if path.is_dir() and tmp.is_dir():
        old = path.with_name(f".{path.name}.old{os.getpid()}")
        os.replace(path, old)
        os.replace(tmp, path)
        _remove(old)
    else:
        os.replace(tmp, path)


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", **kwargs):
    """``open()`` that writes to a temporary file and renames it onto ``path`` on success."""
    with atomic_path(path) as tmp:
        with open(tmp, mode, **kwargs) as f:
            yield f


def _remove(p: Path) -> None:
    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p)
    elif p.exists() or p.is_symlink():
        p.unlink()
