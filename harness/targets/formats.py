"""What kind of file is this? Sniffed from its bytes, so a user's file given to the wrong target
gets one clear sentence instead of a runtime's traceback (or, for ExecuTorch, an abort)."""

from __future__ import annotations

import struct
import zipfile
from pathlib import Path

__all__ = ["describe_format", "pte_header_problem", "zip_members"]

_HEAD = 64


def _head(path: Path) -> bytes:
    with path.open("rb") as f:
        return f.read(_HEAD)


def zip_members(path: Path) -> list[str] | None:
    """The member names of a zip archive (TorchScript, torch.export, torch.save), None otherwise."""
    try:
        with zipfile.ZipFile(path) as archive:
            return archive.namelist()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError):
        return None


def describe_format(path: Path) -> str:
    """A few words naming what the file is: 'an ExecuTorch program', 'a TorchScript archive',
    'a torch.export archive', 'an AOTInductor package', 'a torch.save file', 'a zip archive', 'a text file', 'an ONNX-like
    protobuf', 'a LiteRT (TFLite) flatbuffer' or 'unrecognised bytes'."""
    head = _head(path)
    if len(head) >= 8 and head[4:8] == b"TFL3":
        return "a LiteRT (TFLite) flatbuffer"
    if len(head) >= 8 and head[4:6] == b"ET" and head[6:8].isdigit():
        return "an ExecuTorch program"
    if head.startswith(b"PK\x03\x04"):
        members = zip_members(path)
        if members is None:
            return "a damaged zip archive"
        if any("/data/aotinductor/" in m for m in members):
            return "an AOTInductor package"
        if any(m.endswith("/constants.pkl") for m in members):
            return "a TorchScript archive"
        if any(m.endswith("/archive_format") or "/models/" in m for m in members):
            return "a torch.export archive"
        if any(m.endswith("/data.pkl") for m in members):
            return "a torch.save file"
        return "a zip archive"
    if head and _looks_like_text(head):
        return "a text file"
    if head[:1] == b"\x08":  # ModelProto field 1 (ir_version), a varint
        return "an ONNX-like protobuf"
    return "unrecognised bytes"


def _looks_like_text(head: bytes) -> bool:
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return all(c.isprintable() or c in "\r\n\t" for c in text)


def pte_header_problem(path: object, data: bytes) -> str | None:
    """Why ``data`` is not a whole .pte, told apart: no identifier, a corrupt extended header
    (sizes that cannot describe any program), or a truncated body (a sane header declaring
    more bytes than there are)."""
    if len(data) < 8 or data[4:6] != b"ET" or not data[6:8].isdigit():
        return "not an ExecuTorch program (no 'ETnn' flatbuffer identifier at byte 4)"
    if data[8:12] == b"eh00" and len(data) >= 40:
        (header_size,) = struct.unpack_from("<I", data, 12)
        program_size, segment_base, segment_size = struct.unpack_from("<QQQ", data, 16)
        sane = (
            header_size >= 24
            and 0 < program_size <= (1 << 40)
            and segment_size <= (1 << 40)
            and (segment_size == 0 or segment_base >= program_size)
        )
        if not sane:
            return (
                "corrupt ExecuTorch extended header (program size "
                f"{program_size}, segments at {segment_base} of {segment_size} bytes)"
            )
        needed = segment_base + segment_size if segment_size else program_size
        if len(data) < needed:
            return f"truncated ExecuTorch program ({len(data)} bytes, its header declares {needed})"
    elif data[8:12] != b"eh00":
        return None  # programs without an extended header: the runtime's own checks apply
    return None
