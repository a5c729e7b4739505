"""Plain-data codec and pipe framing shared by the two processes inside the sandbox.

This file is sent as source text into the sandbox (prepended to `_harness.py` and `_worker.py`), so
it must stay self-contained: standard library only, no relative imports.

Values cross from the untrusted worker to the trusted harness only as JSON trees with a few tags,
and `decode_value` builds nothing but builtin containers and scalars. An object whose `__eq__`
always returns True, or a `str` subclass that lies about its contents, cannot survive the trip:
the harness compares what the candidate actually returned, as plain data.
"""

import json
import os
import struct

MAX_DEPTH = 200  # nesting of lists/dicts accepted in either direction
MAX_FRAME = 64 << 20  # bytes per message; a longer announced frame is a protocol error
_SAFE_INT = 1 << 53  # ints at least this large travel as hex text (no JSON/float ambiguity)


class ProtocolError(Exception):
    """The other side sent something that is not a valid frame or value."""


def encode_value(obj, depth=0):
    """Return a JSON-able tree for a plain value; TypeError for anything else."""
    if depth > MAX_DEPTH:
        raise ValueError("value is nested too deeply to send")
    if obj is None or obj is True or obj is False:
        return obj
    if isinstance(obj, bool):
        return bool(obj)
    if isinstance(obj, int):
        value = int.__index__(obj)
        return value if -_SAFE_INT < value < _SAFE_INT else {"i": format(value, "x")}
    if isinstance(obj, float):
        return {"x": float.hex(float.__float__(obj))}
    if isinstance(obj, str):
        return str.__str__(obj)
    nxt = depth + 1
    if isinstance(obj, list):
        return [encode_value(item, nxt) for item in list.__iter__(obj)]
    if isinstance(obj, tuple):
        return {"t": [encode_value(item, nxt) for item in tuple.__iter__(obj)]}
    if isinstance(obj, dict):
        return {"d": [[encode_value(k, nxt), encode_value(v, nxt)] for k, v in dict.items(obj)]}
    if isinstance(obj, frozenset):
        return {"f": [encode_value(item, nxt) for item in frozenset.__iter__(obj)]}
    if isinstance(obj, set):
        return {"s": [encode_value(item, nxt) for item in set.__iter__(obj)]}
    if isinstance(obj, (bytes, bytearray)):
        return {"b" if isinstance(obj, bytes) else "y": bytes(obj).hex()}
    if isinstance(obj, complex):
        return {"c": [float.hex(obj.real), float.hex(obj.imag)]}
    if isinstance(obj, range):
        return {"r": [encode_value(obj.start), encode_value(obj.stop), encode_value(obj.step)]}
    raise TypeError(f"a {type(obj).__name__} cannot cross the sandbox boundary (plain data only)")


def _decode_tagged(node, depth):
    if type(node) is not dict or len(node) != 1:
        raise ProtocolError("malformed value")
    ((tag, body),) = node.items()
    if tag == "x" and type(body) is str:
        return float.fromhex(body)
    if tag == "i" and type(body) is str and len(body) <= (MAX_FRAME // 2):
        return int(body, 16)
    if tag in ("b", "y") and type(body) is str:
        raw = bytes.fromhex(body)
        return raw if tag == "b" else bytearray(raw)
    if tag == "c" and type(body) is list and len(body) == 2 and all(type(p) is str for p in body):
        return complex(float.fromhex(body[0]), float.fromhex(body[1]))
    if type(body) is not list:
        raise ProtocolError("malformed value")
    if tag == "d":
        pairs = [decode_value(pair, depth + 1) for pair in body]
        if not all(type(p) is list and len(p) == 2 for p in pairs):
            raise ProtocolError("malformed dict")
        return {k: v for k, v in pairs}
    items = [decode_value(item, depth + 1) for item in body]
    if tag == "r" and len(items) == 3 and all(type(i) is int for i in items):
        return range(*items)
    if tag == "it":  # the candidate returned an iterator (generator, map...): sent as its items
        return iter(items)
    if tag == "t":
        return tuple(items)
    if tag == "s":
        return set(items)
    if tag == "f":
        return frozenset(items)
    raise ProtocolError("unknown value tag")


def decode_value(node, depth=0):
    """Inverse of `encode_value`; builds only builtin types. Raises on anything unexpected."""
    if depth > MAX_DEPTH:
        raise ProtocolError("value nested too deeply")
    if node is None or type(node) in (bool, int, str):
        if type(node) is int and not -_SAFE_INT < node < _SAFE_INT:
            raise ProtocolError("large int sent without its tag")
        return node
    if type(node) is list:
        return [decode_value(item, depth + 1) for item in node]
    return _decode_tagged(node, depth)


def send_frame(fd, message):
    """Write one length-prefixed JSON message (a dict of plain JSON) to a pipe."""
    payload = json.dumps(message, allow_nan=False, separators=(",", ":")).encode()
    data = struct.pack(">I", len(payload)) + payload
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _read_exact(fd, size):
    chunks = []
    while size:
        chunk = os.read(fd, min(size, 1 << 20))
        if not chunk:
            raise EOFError("pipe closed")
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def recv_frame(fd, max_bytes=MAX_FRAME):
    """Read one message written by `send_frame`. EOFError when the writer is gone."""
    (size,) = struct.unpack(">I", _read_exact(fd, 4))
    if size > max_bytes:
        raise ProtocolError(f"message of {size} bytes exceeds the {max_bytes}-byte cap")
    try:
        message = json.loads(_read_exact(fd, size))
    except ValueError as exc:
        raise ProtocolError(f"message is not JSON: {exc}") from None
    if type(message) is not dict:
        raise ProtocolError("message is not an object")
    return message
