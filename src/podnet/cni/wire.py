"""The thin client's protocol with the agent: length-prefixed fields over a unix stream socket.

    request:  b"PNQ1" field(plugin) field(environment) field(stdin)
    response: b"PNR1" u32(kind) u32(exit code) field(stdout) field(stderr)

A field is a 4-byte big-endian length and that many bytes; the environment is KEY=VALUE entries
separated by NUL. kind 0 means "done: here is the answer", kind 1 "run it yourself" (the agent
refuses clients in another network or mount namespace, whose paths and links it cannot see).
Simple enough to write in C (shim.c speaks it too) and free of imports: the Python client starts
with `-I -S` and must stay near 8 ms.
"""

from __future__ import annotations

__all__ = [
    "DONE",
    "FALLBACK",
    "MAX_FIELD",
    "REQUEST_MAGIC",
    "RESPONSE_MAGIC",
    "decode_env",
    "encode_env",
    "encode_request",
    "encode_response",
    "field",
]

REQUEST_MAGIC = b"PNQ1"
RESPONSE_MAGIC = b"PNR1"
DONE = 0
FALLBACK = 1
MAX_FIELD = 16 << 20  # 16 MiB: far above any CNI configuration with its prevResult


def field(data: bytes) -> bytes:
    return len(data).to_bytes(4, "big") + data


def encode_env(env: dict[str, str]) -> bytes:
    return b"\0".join(f"{k}={v}".encode("utf-8", "surrogateescape") for k, v in env.items())


def decode_env(raw: bytes) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in raw.split(b"\0"):
        key, sep, value = item.partition(b"=")
        if sep:
            out[key.decode("utf-8", "surrogateescape")] = value.decode("utf-8", "surrogateescape")
    return out


def encode_request(plugin: str, env: dict[str, str], stdin: bytes) -> bytes:
    return REQUEST_MAGIC + field(plugin.encode()) + field(encode_env(env)) + field(stdin)


def encode_response(kind: int, code: int = 0, stdout: bytes = b"", stderr: bytes = b"") -> bytes:
    return (RESPONSE_MAGIC + kind.to_bytes(4, "big") + code.to_bytes(4, "big")
            + field(stdout) + field(stderr))
