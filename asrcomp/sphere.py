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

``python -m asrcomp.sphere FILE`` writes FILE as a 16-bit WAV to stdout (PCM only);
``python -m asrcomp.sphere --shorten-for-ffmpeg FILE`` writes its shorten stream in the form
ffmpeg's decoder accepts (see :func:`shorten_for_ffmpeg`).
"""

from __future__ import annotations

import io
import os
import shlex
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from asrcomp.utils import InputError

if TYPE_CHECKING:
    import numpy as np

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


def audio_problem(h: SphereHeader) -> str | None:
    """Why the audio of a parsed SPHERE file cannot be what its header says, or ``None``.

    A header ``sample_count`` of 0, a PCM body shorter than ``sample_count`` samples (a copy cut
    short, or the WSJ discs' empty files), or a compressed file with nothing after its header."""
    n = h.sample_count
    if n <= 0:
        return f"SPHERE header says sample_count {n}"
    try:
        body = os.path.getsize(h.path) - h.header_size
    except OSError as e:
        return f"cannot read: {e}"
    if h.shorten or not h.coding.startswith("pcm"):
        return None if body > 0 else f"no data after its {h.header_size}-byte header (header says {n} samples)"
    need = n * h.channel_count * h.sample_n_bytes
    if body < need:
        have = body // (h.channel_count * h.sample_n_bytes)
        return f"body holds {have} samples ({body} bytes) but the header says {n} ({need} bytes)"
    return None


def read_sphere(path: str | os.PathLike, header: SphereHeader | None = None) -> tuple[np.ndarray, int]:
    """Samples of an uncompressed PCM SPHERE file as ``(int16 array (samples, channels), sample_rate)``."""
    import numpy as np

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
                         f"{len(raw) // (2 * h.channel_count)}",
                         fix="copy the file again from the disc, or leave it out of wav.scp")
    data = np.frombuffer(raw, dtype=">i2" if h.big_endian else "<i2").astype(np.int16)
    return data.reshape(-1, h.channel_count), h.sample_rate


def write_sphere(path: str | os.PathLike, samples: np.ndarray, sample_rate: int, big_endian: bool = False,
                 extra: dict[str, str | int] | None = None, coding: str = "pcm") -> None:
    """Write int16 samples as an uncompressed PCM SPHERE file (1024-byte header, as on the LDC discs).

    ``coding`` only changes the header's ``sample_coding`` (tests use it to label PCM data as shorten)."""
    import numpy as np

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


class _Bits:
    """MSB-first bit reader over ``data`` (shorten's bit order)."""

    def __init__(self, data: bytes, path):
        self.n = len(data) * 8
        self.v = int.from_bytes(data, "big")
        self.pos = 0
        self.path = path

    def bit(self) -> int:
        if self.pos >= self.n:
            raise InputError(self.path, "shorten stream ends inside its header", fix="copy the file again")
        self.pos += 1
        return (self.v >> (self.n - self.pos)) & 1

    def bits(self, k: int) -> int:
        out = 0
        for _ in range(k):
            out = (out << 1) | self.bit()
        return out

    def uvar(self, k: int) -> int:
        q = 0
        while not self.bit():
            q += 1
            if q > 1 << 20:
                raise InputError(self.path, "shorten header has a runaway code", fix="copy the file again")
        return (q << k) | self.bits(k)

    def ulong(self, version: int, k: int) -> int:
        return self.uvar(self.uvar(2) if version else k)


def _put_uvar(bits: list[int], value: int, k: int) -> None:
    bits.extend([0] * (value >> k) + [1])
    bits.extend((value >> (k - 1 - i)) & 1 for i in range(k))


def _put_ulong(bits: list[int], version: int, value: int, k: int) -> None:
    if version:
        n = value.bit_length()
        _put_uvar(bits, n, 2)
        _put_uvar(bits, value, n)
    else:
        _put_uvar(bits, value, k)


def shorten_for_ffmpeg(path: str | os.PathLike) -> bytes:
    """The shorten stream of a shorten-compressed SPHERE file, rewritten so that ffmpeg decodes it.

    ffmpeg's shorten decoder requires the stream to start with a verbatim section holding a RIFF
    (or AIFF) header ("missing verbatim section at beginning of stream"); the WSJ discs' streams
    have none, the SPHERE header describes the audio. This re-encodes the stream's parameters,
    inserts a FN_VERBATIM section with a canonical 44-byte WAV header made from the SPHERE
    header, and appends the rest of the bit stream unchanged. Pure Python, no decoding."""
    import struct

    h = read_header(path)
    with open(h.path, "rb") as f:
        f.seek(h.header_size)
        data = f.read()
    if data[:4] != b"ajkg" or len(data) < 6:
        raise InputError(h.path, f"header says {h.coding} but the data does not start with a shorten stream "
                         f"(got {data[:4]!r})", fix="copy the file again")
    version = data[4]
    b = _Bits(data[5:], h.path)
    params = [b.ulong(version, 4), b.ulong(version, 0)]  # internal file type, channels
    if version:
        params += [b.ulong(version, 8), b.ulong(version, 2), b.ulong(version, 0)]  # blocksize, maxnlpc, nmean
        nskip = b.ulong(version, 1)
        skipped = [b.bits(8) for _ in range(nskip)]
    ch, rate = h.channel_count, h.sample_rate
    nbytes = h.sample_count * ch * 2
    wav = (b"RIFF" + struct.pack("<I", 36 + nbytes) + b"WAVE" + b"fmt " +
           struct.pack("<IHHIIHH", 16, 1, ch, rate, rate * ch * 2, ch * 2, 16) + b"data" + struct.pack("<I", nbytes))
    out: list[int] = []
    for value, k in zip(params, (4, 0, 8, 2, 0)):
        _put_ulong(out, version, value, k)
    if version:
        _put_ulong(out, version, nskip, 1)
        for byte in skipped:
            out.extend((byte >> (7 - i)) & 1 for i in range(8))
    _put_uvar(out, 9, 2)  # FN_VERBATIM
    _put_uvar(out, len(wav), 5)
    for byte in wav:
        _put_uvar(out, byte, 8)
    head = int("".join(map(str, out)), 2)
    rest_n = b.n - b.pos
    total = len(out) + rest_n
    v = (head << rest_n) | (b.v & ((1 << rest_n) - 1))
    pad = -total % 8
    return data[:5] + (v << pad).to_bytes((total + pad) // 8, "big")


def decoder_command(path: str | os.PathLike, header: SphereHeader | None = None,
                    tools: dict[str, str | None] | None = None) -> str | None:
    """The shell command (without the trailing ``|``) that writes ``path`` as WAV to stdout,
    or ``None`` when the file is PCM that soundfile reads itself.

    Shorten-compressed files use ``sph2pipe`` when it is on PATH, else ``ffmpeg`` fed by
    ``python -m asrcomp.sphere --shorten-for-ffmpeg`` (:func:`shorten_for_ffmpeg`: ffmpeg cannot
    read the discs' shorten streams as they are); with neither, an :class:`InputError` says what
    to install. ``tools`` overrides the PATH lookup (for tests).
    """
    h = header or read_header(path)
    if not h.shorten:
        return None
    tools = tools if tools is not None else {"sph2pipe": shutil.which("sph2pipe"), "ffmpeg": shutil.which("ffmpeg")}
    q = shlex.quote(str(path))
    if tools.get("sph2pipe"):
        return f"{tools['sph2pipe']} -f wav -p -c 1 {q}"
    if tools.get("ffmpeg"):
        py = tools.get("python") or sys.executable
        return (f"{shlex.quote(py)} -m asrcomp.sphere --shorten-for-ffmpeg {q} | {tools['ffmpeg']} -nostdin "
                f"-loglevel error -f shn -i - -f wav -acodec pcm_s16le -")
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
    shn = argv[:1] == ["--shorten-for-ffmpeg"]
    if shn:
        argv = argv[1:]
    if len(argv) != 1:
        print("usage: python -m asrcomp.sphere FILE.sph > FILE.wav  (PCM)\n"
              "       python -m asrcomp.sphere --shorten-for-ffmpeg FILE.wv1 | ffmpeg -f shn -i - out.wav",
              file=sys.stderr)
        return 1
    try:
        sys.stdout.buffer.write(shorten_for_ffmpeg(argv[0]) if shn else to_wav_bytes(argv[0]))
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
