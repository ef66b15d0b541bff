"""The Redis Streams backend (redis-py asyncio, hiredis): consumer groups and leases.

Keys of a stream ``s`` (names configurable):

- ``s``: the stream (of the normal priority level, and of messages without a
  priority). Each entry has the body in its ``payload`` field, properties as
  fields of their own (``id``, ``type``, ``priority``, ``correlation_id``...), and any
  other field as a header. Consumers read it in a consumer group (``foxactors`` by
  default), created from the start of the stream if missing.
- ``s:critical``, ``s:high``, ``s:low``: the streams of the other priority levels,
  created by their first entry; a consumer reads the levels highest first, never
  more than its credit in all (see ``_levels``).
- ``s:delayed``: a sorted set of entries due later (retries, deferrals, delayed
  publishes), scored by due time on the Redis clock. A scheduler moves due ones
  into the stream of their level with a Lua script: each exactly once, even with
  many schedulers, and nothing is lost across restarts with persistence on.
- ``s:dlq``: the dead-letter stream of every level: the original fields plus
  ``x-failure-reason``, ``x-final-attempt``, ``x-failed-at`` and ``x-original-id``.

Leases: an entry read by a consumer stays in the group's pending list until it is
settled. A consumer renews the lease of what it holds (resets its idle time); a
reclaimer moves entries idle longer than ``claim_min_idle`` (their consumer died) to
a live consumer. The attempt number is the entry's delivery count from the pending
list plus the attempts of earlier copies (``x-attempt``), so max retries holds even
when consumers die mid-message.

Every copy (retry, requeue, defer, dead letter) and the acknowledgement of its
original happen in one Lua script, and only while the settling consumer still owns
the entry; plain acks go out as one XACK per batch. Nothing is acknowledged before
its outcome.

Modules: ``_wire`` (entry fields, pure), ``_levels`` (priority levels and their
streams, pure), ``_client`` (redis-py clients, and which
errors mean what), ``_scripts`` (the Lua scripts, from ``lua/``), ``_backend``
(publishing, opening sources), ``_source`` (a consumer and its batched settlement),
``_leases`` (renewing, reclaiming, forgetting dead consumers), ``_scheduler`` (moving
due entries back), ``_keeper`` (the actors and tasks that run those jobs),
``_deadletters`` (listing, replaying, purging the dead-letter stream).

Redis Streams run on asyncio only (redis-py): use this backend under asyncio.
"""

from __future__ import annotations

try:
    import redis.asyncio  # noqa: F401 - only to say what to install when it is missing
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ImportError(
        "the Redis backend needs redis-py: pip install 'foxactors[redis]' "
        "(from a clone: pip install '.[redis]')"
    ) from exc

from ._backend import RedisBackend as RedisBackend
from ._backend import RedisStatistics as RedisStatistics
from ._leases import Leases as Leases
from ._source import RedisSource as RedisSource
from ._wire import RESERVED_FIELDS as RESERVED_FIELDS
