"""LZF (liblzf) streams as used by PCD ``DATA binary_compressed``, without a C extension.

LZF is a byte-oriented LZ77 variant whose back-references depend on everything decoded before
them, so decoding is inherently sequential. The loop below works per *token* (a literal run of
up to 32 bytes or a back-reference of up to 264 bytes), never per byte, and appends whole slices:
Python's per-step overhead is then paid once per token rather than once per byte, which is what
makes a pure-Python decoder usable for Kinect-sized (640x480) clouds.
"""

from __future__ import annotations

import numpy as np

from .errors import CloudFormatError

_MAX_LITERAL = 32


def decompress(src: bytes | bytearray | memoryview, expected_size: int) -> bytes:
    """Decode an LZF stream; raise CloudFormatError if it is corrupt or not ``expected_size`` long.

    Token format (liblzf): control byte ``c``; ``c < 32``: ``c + 1`` literal bytes follow;
    otherwise length ``c >> 5`` (7 means "add the next byte"), plus 2, copied from
    ``distance = ((c & 31) << 8 | next byte) + 1`` bytes back; the copy may overlap its own output.
    """
    src = bytes(src)
    out = bytearray()
    ip = 0
    end = len(src)
    try:
        while ip < end:
            ctrl = src[ip]
            ip += 1
            if ctrl < 32:
                stop = ip + ctrl + 1
                if stop > end:
                    raise CloudFormatError(
                        f"LZF literal run of {ctrl + 1} bytes at input byte {ip - 1} overruns the "
                        f"{end}-byte stream (truncated data?)"
                    )
                out += src[ip:stop]
                ip = stop
                continue
            length = ctrl >> 5
            if length == 7:
                length += src[ip]
                ip += 1
            length += 2
            here = len(out)
            ref = here - ((ctrl & 0x1F) << 8) - src[ip] - 1
            ip += 1
            if ref < 0:
                raise CloudFormatError(
                    f"LZF back-reference at input byte {ip} points {here - ref} bytes back but only "
                    f"{here} bytes were decoded (corrupt data)"
                )
            if ref + length <= here:
                out += out[ref : ref + length]
            else:  # overlapping copy repeats the last (here - ref) bytes, e.g. a run of one value
                pattern = out[ref:here]
                out += (pattern * (length // len(pattern) + 1))[:length]
            if len(out) > expected_size:
                break
    except IndexError:  # a back-reference token cut off by the end of the stream
        raise CloudFormatError(f"LZF stream ends inside a back-reference token ({end} bytes)") from None
    if len(out) != expected_size:
        raise CloudFormatError(
            f"LZF stream decodes to {len(out)}{'+' if len(out) > expected_size else ''} bytes "
            f"but {expected_size} were expected"
        )
    return bytes(out)


def compress_literal(data: bytes | np.ndarray) -> bytes:
    """A valid LZF stream of ``data`` made of literal runs only (vectorised; about 3 % larger).

    Any LZF decoder (PCL's included) reads it. It trades size for speed and simplicity: PCD files
    written with it stay interoperable without a Python-speed LZ77 match search.
    """
    raw = np.frombuffer(bytes(data) if not isinstance(data, np.ndarray) else data.tobytes(), dtype=np.uint8)
    full, tail = divmod(len(raw), _MAX_LITERAL)
    chunks = np.empty((full, _MAX_LITERAL + 1), dtype=np.uint8)
    chunks[:, 0] = _MAX_LITERAL - 1
    chunks[:, 1:] = raw[: full * _MAX_LITERAL].reshape(full, _MAX_LITERAL)
    out = chunks.tobytes()
    if tail:
        out += bytes([tail - 1]) + raw[full * _MAX_LITERAL :].tobytes()
    return out
