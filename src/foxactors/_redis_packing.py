"""Redis commands packed by hiredis in one call, for the clients foxactors makes.

redis-py encodes a command argument by argument in Python (an encode call and type
checks each, before hiredis or its own Python packer joins them): 12 µs for a
message's XADD of 20 arguments, more than the rest of a publish. hiredis packs the
same tuple in C in 1.5 µs, to the same bytes as redis-py's UTF-8 strict encoder for
every str, bytes, int and float (a property test holds them to it). Anything else
(a bool, None, an enum, a command name that is not one word of letters) goes to
redis-py's own packer, so its errors stay the same; so does every command of a
connection configured with another encoding. foxactors never sends a memoryview
(which hiredis would take, and pack wrongly if it is not contiguous).

This module belongs to the backends' layer: the Redis backend and the Redis job
store make clients with it.
"""

from __future__ import annotations

import codecs
from collections.abc import Callable
from typing import Any

_pack: Callable[[tuple[Any, ...]], bytes] | None
try:
    from hiredis import pack_command as _pack
except ImportError:  # pragma: no cover - hiredis comes with the redis extra
    _pack = None


_UTF8 = ("utf-8", "strict")
"""How hiredis encodes text."""


class _Packer:
    """A connection's ``pack_command``: hiredis for what it takes, else redis-py's."""

    __slots__ = ("_fallback",)

    def __init__(self, fallback: Callable[..., list[bytes]]) -> None:
        self._fallback = fallback

    def __call__(self, *args: Any) -> list[bytes]:
        name = args[0]
        if type(name) is str and name.isalpha():  # redis-py splits "SCRIPT LOAD" in two
            try:
                return [_pack(args)]  # type: ignore[misc] # installed only with hiredis
            except TypeError:  # an argument hiredis does not take: redis-py says why
                pass
        return self._fallback(*args)


def pack_fast(client: Any) -> None:
    """Make the connections ``client``'s pool opens pack commands with hiredis.

    For a client foxactors made and owns (a caller's client is left as it is);
    nothing changes without hiredis, or for a connection that encodes text other
    than as UTF-8, strictly (``?encoding=`` or ``?encoding_errors=`` in its URL).
    """
    if _pack is None:  # pragma: no cover - hiredis comes with the redis extra
        return
    pool = client.connection_pool
    make = pool.make_connection

    def make_connection() -> Any:
        connection = make()
        encoder = connection.encoder
        if (codecs.lookup(encoder.encoding).name, encoder.encoding_errors) == _UTF8:
            connection.pack_command = _Packer(connection.pack_command)
        return connection

    pool.make_connection = make_connection
