"""NIST SPHERE audio (the LDC's ``.wv1``/``.sph`` files): header, PCM samples, wav.scp entries.

A SPHERE file starts with a text header::

    NIST_1A
       1024
    sample_count -i 112000
    sample_rate -i 16000
    channel_count -i 1
    sample_n_bytes -i 2
    sample_byte_format -s2 01
    sample_coding -s3 pcm            (or "pcm,embedded-shorten-v2.00" on the WSJ discs)
    end_head

padded to the header size (line 2), then the samples. Uncompressed PCM is read
here (and by libsndfile, so a wav.scp entry can be the file itself);
shorten-compressed files need ``sph2pipe`` (Kaldi's tools/) or ``ffmpeg``, and
become a ``cmd |`` pipe in wav.scp, as in Kaldi.

``python -m asrcomp.sphere FILE`` writes FILE as a 16-bit WAV to stdout (PCM only).
"""

from __future__ import annotations

import io
import os
import shlex
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from asrcomp.utils import InputError

MAGIC = b"NIST_1A"


@dataclass
class SphereHeader:
    path: Path
    header_size: int
    fields: dict[str, str | int | float] = field(default_factory=dict)

    def _int(self, key: str, default: int | None = None) -> int:
        v = self.fields.get(key, default)
        if v is None:
            raise InputError(self.path, f"SPHERE header has no '{key}'", fix="the file is damaged; copy it again")
        return int(v)

    @property
    def sample_rate(self) -> int:
        return self._int("sample_rate")

    @property
    def sample_count(self) -> int:
        return self._int("sample_count")

    @property
    def channel_count(self) -> int:
        return self._int("channel_count", 1)

    @property
    def sample_n_bytes(self) -> int:
        return self._int("sample_n_bytes", 2)

    @property
    def coding(self) -> str:
        return str(self.fields.get("sample_coding", "pcm")).lower()

    @property
    def shorten(self) -> bool:
        return "shorten" in self.coding

    @property
    def big_endian(self) -> bool:
        # "10" (and "1032" for 4-byte samples) is big-endian; "01"/"0123" little-endian
        return str(self.fields.get("sample_byte_format", "01")).startswith("1")

    @property
    def duration(self) -> float:
        return self.sample_count / self.sample_rate


def read_header(path: str | os.PathLike) -> SphereHeader:
    """Parse a SPHERE header; an unreadable or malformed header is an :class:`InputError` naming the file."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            head = f.read(1024)
            if not head.startswith(MAGIC):
                raise InputError(path, f"not a NIST SPHERE file (starts with {head[:8]!r}, expected {MAGIC!r})",
                                 fix="the file is damaged or not audio; copy it again from the disc")
            lines = head.split(b"\n")
            try:
                size = int(lines[1].strip())
            except (IndexError, ValueError):
                raise InputError(path, "SPHERE header size (line 2) is not a number",
                                 fix="the file is damaged; copy it again from the disc") from None
            if size < 16 or size > 1 << 20:
                raise InputError(path, f"SPHERE header size {size} is implausible", fix="copy the file again")
            if size > len(head):
                head += f.read(size - len(head))
    except OSError as e:
        raise InputError(path, f"cannot read: {e}", fix="check the path and its permissions") from e
    if len(head) < size:
        raise InputError(path, f"file ends inside its {size}-byte SPHERE header", fix="copy the file again")
    fields: dict[str, str | int | float] = {}
    ended = False
    for lineno, raw in enumerate(head[:size].split(b"\n")[2:], 3):
        line = raw.decode("latin-1").strip()
        if not line or line.startswith(";"):
            continue
        if line == "end_head":
            ended = True
            break
        parts = line.split(None, 2)
        if len(parts) < 3 or not parts[1].startswith("-"):
            raise InputError(path, f"malformed SPHERE header line {line!r}", lineno, "copy the file again")
        key, typ, value = parts
        try:
            fields[key] = int(value) if typ == "-i" else float(value) if typ == "-r" else value
        except ValueError:
            raise InputError(path, f"SPHERE header field {key} {typ} has bad value {value!r}", lineno) from None
    if not ended:
        raise InputError(path, "SPHERE header has no 'end_head'", fix="the file is damaged; copy it again")
    return SphereHeader(path, size, fields)


def read_sphere(path: str | os.PathLike, header: SphereHeader | None = None) -> tuple[np.ndarray, int]:
    """Samples of an uncompressed PCM SPHERE file as ``(int16 array (samples, channels), sample_rate)``."""
    h = header or read_header(path)
    if h.shorten:
        raise InputError(h.path, f"shorten-compressed SPHERE ({h.coding}) cannot be read natively",
                         fix="decode it with sph2pipe or ffmpeg (see asrcomp.sphere.wav_scp_entry)")
    if h.sample_n_bytes != 2 or not h.coding.startswith("pcm"):
        raise InputError(h.path, f"unsupported SPHERE coding {h.coding!r} with {h.sample_n_bytes}-byte samples",
                         fix="convert it with sph2pipe -f wav")
    n = h.sample_count * h.channel_count
    with open(h.path, "rb") as f:
        f.seek(h.header_size)
        raw = f.read(2 * n)
    if len(raw) < 2 * n:
        raise InputError(h.path, f"truncated: header says {h.sample_count} samples, file holds "
                         f"{len(raw) // (2 * h.channel_count)}", fix="copy the file again")
    data = np.frombuffer(raw, dtype=">i2" if h.big_endian else "<i2").astype(np.int16)
    return data.reshape(-1, h.channel_count), h.sample_rate


def write_sphere(path: str | os.PathLike, samples: np.ndarray, sample_rate: int, big_endian: bool = False,
                 extra: dict[str, str | int] | None = None, coding: str = "pcm") -> None:
    """Write int16 samples as an uncompressed PCM SPHERE file (1024-byte header, as on the LDC discs).

    ``coding`` only changes the header's ``sample_coding`` (tests use it to label PCM data as shorten)."""
    samples = np.asarray(samples, dtype=np.int16)
    if samples.ndim == 1:
        samples = samples[:, None]
    fields: list[tuple[str, str, object]] = [
        ("sample_count", "-i", samples.shape[0]), ("sample_rate", "-i", sample_rate),
        ("channel_count", "-i", samples.shape[1]), ("sample_n_bytes", "-i", 2),
        ("sample_byte_format", "-s2", "10" if big_endian else "01"), ("sample_coding", f"-s{len(coding)}", coding),
        ("sample_sig_bits", "-i", 16)]
    for k, v in (extra or {}).items():
        fields.append((k, "-i" if isinstance(v, int) else f"-s{len(str(v))}", v))
    text = "NIST_1A\n   1024\n" + "".join(f"{k} {t} {v}\n" for k, t, v in fields) + "end_head\n"
    head = text.encode("latin-1").ljust(1024, b" ")
    with open(path, "wb") as f:
        f.write(head)
        f.write(samples.astype(">i2" if big_endian else "<i2").tobytes())


def decoder_command(path: str | os.PathLike, header: SphereHeader | None = None,
                    tools: dict[str, str | None] | None = None) -> str | None:
    """The shell command (without the trailing ``|``) that writes ``path`` as WAV to stdout,
    or ``None`` when the file is PCM that soundfile reads itself.

    Shorten-compressed files use ``sph2pipe`` when it is on PATH, else ``ffmpeg`` (the SPHERE
    header is skipped with ``tail`` and the shorten stream decoded); with neither, an
    :class:`InputError` says what to install. ``tools`` overrides the PATH lookup (for tests).
    """
    h = header or read_header(path)
    if not h.shorten:
        return None
    tools = tools if tools is not None else {"sph2pipe": shutil.which("sph2pipe"), "ffmpeg": shutil.which("ffmpeg")}
    q = shlex.quote(str(path))
    if tools.get("sph2pipe"):
        return f"{tools['sph2pipe']} -f wav -p -c 1 {q}"
    if tools.get("ffmpeg"):
        return (f"tail -c +{h.header_size + 1} {q} | {tools['ffmpeg']} -nostdin -loglevel error -f shn -i - "
                f"-f wav -acodec pcm_s16le -")
    raise InputError(path, f"shorten-compressed SPHERE ({h.coding}) needs sph2pipe or ffmpeg, and neither is on PATH",
                     fix="install sph2pipe (Kaldi: cd tools && make sph2pipe; or build sph2pipe_v2.5 from the LDC) "
                         "and put it on PATH, or install ffmpeg (apt-get install ffmpeg)")


def wav_scp_entry(path: str | os.PathLike, header: SphereHeader | None = None,
                  tools: dict[str, str | None] | None = None) -> str:
    """A ``wav.scp`` value for a SPHERE file: the path itself (PCM) or a ``cmd |`` pipe (shorten)."""
    cmd = decoder_command(path, header, tools)
    return str(path) if cmd is None else f"{cmd} |"


def to_wav_bytes(path: str | os.PathLike) -> bytes:
    import soundfile as sf

    data, sr = read_sphere(path)
    buf = io.BytesIO()
    sf.write(buf, data, sr, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m asrcomp.sphere FILE.sph > FILE.wav", file=sys.stderr)
        return 1
    try:
        sys.stdout.buffer.write(to_wav_bytes(argv[0]))
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
