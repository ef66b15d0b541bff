"""How messages look on each broker's wire: pure functions, no server needed."""

from __future__ import annotations

import datetime
import math
from typing import Any

import aio_pika
import pytest
from hypothesis import given
from hypothesis import strategies as st
from redis.asyncio.connection import Connection
from redis.exceptions import DataError

import foxactors as fa
from foxactors._redis_packing import _Packer
from foxactors.backends._admission import Admission, Inadmissible
from foxactors.backends.rabbitmq import _wire as amqp
from foxactors.backends.redis import _wire as streams
from foxactors.backends.redis._client import new_client

PROPS = fa.MessageProperties(
    content_type="application/json",
    content_encoding="utf-8",
    priority=5,
    expiration=1.5,
    message_type="greet",
    user_id="guest",
    app_id="mailer",
    cluster_id="eu-1",
    reply_to="answers",
    correlation_id="c-1",
    headers={"tenant": "acme"},
)
WHEN = datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)


# -- RabbitMQ ------------------------------------------------------------------------------


def test_amqp_properties_round_trip_with_the_cluster_id_as_a_header() -> None:
    message = amqp.to_amqp(PROPS, b"{}", "m-1", now=WHEN.timestamp())
    assert message.timestamp == WHEN
    assert message.headers == {"tenant": "acme", "x-cluster-id": "eu-1"}  # RabbitMQ refuses it
    assert message.properties.expiration == "1500"  # milliseconds, as text
    assert message.delivery_mode is aio_pika.DeliveryMode.PERSISTENT
    assert amqp.from_amqp(message.properties) == PROPS
    transient = amqp.to_amqp(PROPS, b"{}", "m-1", now=0, persistent=False)
    assert transient.delivery_mode is aio_pika.DeliveryMode.NOT_PERSISTENT


def test_amqp_attempts_add_redeliveries_to_the_retry_header() -> None:
    assert amqp.attempt_of({}, redelivered=False) == (1, None, "")
    assert amqp.attempt_of({"x-retry-attempt": 2}, redelivered=True) == (4, None, "")
    quorum = {"x-retry-attempt": 2, "x-delivery-count": 3}  # the count wins over the flag
    assert amqp.attempt_of(quorum, redelivered=True) == (6, 3, "")
    attempt, _, problem = amqp.attempt_of({"x-retry-attempt": "two"}, redelivered=False)
    assert (attempt, problem) == (1, "bad header: x-retry-attempt='two' is not a count")


@pytest.mark.parametrize(
    ("decision", "attempt_header"),
    [(fa.Decision.RETRY, 3), (fa.Decision.DEFER, 2)],  # a deferral was never tried
)
def test_amqp_retry_copies_count_attempts(decision: fa.Decision, attempt_header: int) -> None:
    headers = amqp.copy_headers(
        {"tenant": "acme", "x-delivery-count": 2},
        "1500",
        decision,
        3,
        reason="",
        routing_key="jobs",
        now=WHEN.timestamp(),
    )
    assert headers == {
        "tenant": "acme",
        "x-original-expiration": "1500",
        "x-retry-attempt": attempt_header,
    }


def test_amqp_dead_letters_say_why_when_and_after_how_many_attempts() -> None:
    headers = amqp.copy_headers(
        {"tenant": "acme"},
        None,
        fa.Decision.DEAD_LETTER,
        3,
        reason="no good",
        routing_key="jobs",
        now=WHEN.timestamp(),
    )
    copy = amqp.copy_of(
        amqp.to_amqp(PROPS, b"{}", "m-1", now=WHEN.timestamp()).properties, b"{}", headers
    )
    letter = amqp.dead_letter("jobs", b"{}", copy.properties)
    assert (letter.id, letter.queue, letter.reason, letter.attempts) == (
        "m-1",
        "jobs",
        "no good",
        3,
    )
    assert letter.failed_at == WHEN.timestamp()
    assert letter.properties.headers["x-original-routing-key"] == "jobs"
    assert amqp.replay_properties(letter).headers == {"tenant": "acme"}  # attempts start over


def test_amqp_dead_letters_of_the_broker_itself_say_so() -> None:
    expired = aio_pika.Message(b"{}", headers={"x-death": [{"reason": "expired"}]})
    letter = amqp.dead_letter("jobs", b"{}", expired.properties)
    assert letter.reason == "expired (by the broker)"
    assert (letter.attempts, math.isnan(letter.failed_at)) == (0, True)


def test_amqp_copies_of_one_message_go_in_separate_waves() -> None:
    copies = ["a", "b", "a", None, "a", None]
    assert amqp.waves(copies, lambda c: c) == [["a", "b", None, None], ["a"], ["a"]]


# -- Redis Streams -------------------------------------------------------------------------


def raw(fields: dict[str, Any]) -> dict[bytes, bytes]:
    """Entry fields as Redis gives them back: bytes."""
    return {k.encode(): v if isinstance(v, bytes) else str(v).encode() for k, v in fields.items()}


def fields_of(properties: fa.MessageProperties) -> dict[bytes, bytes]:
    return raw(
        streams.entry_fields(
            b"{}",
            properties,
            "m-1",
            payload_field="payload",
            content_type="application/json",
            now=7.5,
        )
    )


def test_stream_fields_round_trip() -> None:
    fields = fields_of(PROPS)
    assert b"content_type" not in fields  # the codec's content type is implied
    parsed = streams.parse(b"1-0", fields, b"payload", fa.MessageProperties())
    assert parsed == (b"{}", "m-1", PROPS, 0, 7.5)


def test_stream_plain_entries_take_the_fast_path() -> None:
    default = fa.MessageProperties()
    fast = streams.plain(b"1-0", fields_of(default), b"payload", default)
    assert fast == (b"{}", "m-1", default, 0, 7.5)
    assert streams.plain(b"1-0", fields_of(PROPS), b"payload", default) is None  # the full parse
    # a payload alone (another producer's entry): the entry id and time stand in
    alone = streams.plain(b"2500-0", {b"payload": b"1"}, b"payload", default)
    assert alone == (b"1", "2500-0", default, 0, 2.5)


@pytest.mark.parametrize(
    ("header", "error"),
    [("priority", "reserved field name"), ("x-attempt", "reserved field name")],
)
def test_stream_headers_may_not_take_reserved_names(header: str, error: str) -> None:
    with pytest.raises(fa.ConfigurationError, match=error):
        fields_of(fa.MessageProperties(headers={header: 1}))


def test_stream_headers_must_be_plain_values() -> None:
    with pytest.raises(fa.ConfigurationError, match="header 'tags' is list"):
        fields_of(fa.MessageProperties(headers={"tags": []}))


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({b"id": b"m"}, "no 'payload' field"),
        ({b"payload": b"{}", b"priority": b"high"}, "bad field: priority=b'high' is not int"),
        ({b"payload": b"{}", b"x-attempt": b"-1"}, "bad field: x-attempt=b'-1' is out of range"),
        ({b"payload": b"{}", b"type": b"\xff"}, "bad field: type is not UTF-8"),
    ],
)
def test_bad_stream_entries_say_why(fields: dict[bytes, bytes], reason: str) -> None:
    with pytest.raises(streams.BadEntry) as caught:
        streams.parse(b"1-0", fields, b"payload", fa.MessageProperties())
    assert str(caught.value).startswith(reason)


def test_stream_dead_letters_round_trip() -> None:
    fields = fields_of(PROPS)
    extra = streams.dead_letter_fields("no good", 3, b"1-0", WHEN.timestamp())
    fields.update(raw(dict(zip(extra[::2], extra[1::2], strict=True))))
    letter = streams.dead_letter("jobs", b"9-0", fields, b"payload", fa.MessageProperties())
    assert (letter.id, letter.queue, letter.body, letter.properties) == (
        "m-1",
        "jobs",
        b"{}",
        PROPS,
    )
    assert (letter.reason, letter.attempts, letter.failed_at) == ("no good", 3, WHEN.timestamp())


# -- the admission check, the same on every backend ----------------------------------------


def test_admission_decodes_what_it_admits() -> None:
    admit = Admission(fa.JsonCodec())
    assert admit(b'{"a":1}', "application/json") == {"a": 1}
    assert admit(b"[]", None) == []  # unspecified: the codec's
    assert admit(b"[]", "", expiration=5, age=4.9) == []


@pytest.mark.parametrize(
    ("body", "content_type", "expiration", "age", "reason"),
    [
        (b"<x/>", "text/xml", None, None, "unknown content type 'text/xml': this consumer "),
        (b"1", None, 5, 6.0, "expired: not delivered within 5 s"),
        (b"1", None, 0.5, 0.75, "expired: not delivered within 0.5 s"),
        (b"{nope", None, None, None, "undecodable: body is not valid JSON"),
        (b'"' + b"x" * 40 + b'"', None, None, None, "undecodable: body is 42 bytes, over max"),
    ],
)
def test_admission_refuses_with_the_dead_letter_reason(
    body: bytes, content_type: str | None, expiration: float | None, age: float | None, reason: str
) -> None:
    admit = Admission(fa.JsonCodec(max_size=16))
    with pytest.raises(Inadmissible) as refused:
        admit(body, content_type, expiration, age)
    assert str(refused.value).startswith(reason)
    assert refused.value.undecodable is reason.startswith("undecodable")


def test_admission_leaves_expiry_to_brokers_that_expire_messages_themselves() -> None:
    assert Admission(fa.JsonCodec())(b"1", None, expiration=5, age=None) == 1


redis_arguments = st.one_of(
    st.text(),
    st.binary(),
    st.integers(),
    st.floats(allow_nan=False),
)


@given(st.lists(redis_arguments, max_size=25))
def test_commands_packed_by_hiredis_are_the_bytes_redis_py_packs(arguments: list[Any]) -> None:
    connection = Connection()
    own = connection.pack_command
    packer = _Packer(own)
    command = ("XADD", "orders", *arguments)
    assert b"".join(packer(*command)) == b"".join(own(*command))


def test_arguments_hiredis_does_not_take_go_to_redis_py_and_its_errors() -> None:
    connection = Connection()
    packer = _Packer(connection.pack_command)
    for name in ("SCRIPT LOAD", "CLIENT\tLIST", "GET\n", "", b"GET"):  # redis-py splits them
        assert packer(name, "x") == connection.pack_command(name, "x")
    for refused in (True, None, [1]):
        with pytest.raises(DataError):
            packer("SET", "k", refused)


def test_clients_foxactors_makes_pack_with_hiredis() -> None:
    from foxactors.jobs import RedisJobStore  # noqa: PLC0415 - jobs is above this file

    url = "redis://127.0.0.1:1/0"  # nothing connects
    store = RedisJobStore(url)
    for client in (new_client(url, retries=0), store._link.client):
        pool: Any = client.connection_pool
        assert isinstance(pool.make_connection().pack_command, _Packer)
    # hiredis encodes text as UTF-8, strictly: a connection told otherwise keeps redis-py's
    for options in ("encoding=latin-1", "encoding_errors=replace"):
        pool = new_client(f"{url}?{options}", retries=0).connection_pool
        connection = pool.make_connection()
        assert not isinstance(connection.pack_command, _Packer)
        assert b"".join(connection.pack_command("SET", "k", "\xe9")).endswith(
            b"\xe9\r\n" if "latin" in options else b"\xc3\xa9\r\n"
        )
