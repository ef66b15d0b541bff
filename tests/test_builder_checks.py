"""Mistakes in a `WorkerApp` are caught when it is built, with errors that say the fix.

A handler that cannot take a message, a `Worker` whose ``process`` cannot, and a
misspelt option: each is a `ConfigurationError` at the call that made it, never a
dead letter or a raw ``TypeError`` later.
"""

from __future__ import annotations

import functools
from typing import Any

import anyio
import pytest

import foxactors as fa

pytestmark = pytest.mark.anyio


async def no_message() -> None:
    pass


async def two_messages(message: fa.Message, other: fa.Message) -> None:
    pass


async def keyword_only(*, message: fa.Message) -> None:
    pass


class NoMessageWorker:
    id = "no-message"
    timeout = None

    async def process(self) -> None:
        pass


class BlockingWorker:
    id = "blocking"
    timeout = None

    def process(self, message: fa.Message) -> None:
        pass


class NeedsArguments:
    timeout = None

    def __init__(self, client: object) -> None:
        self.id = "needs-arguments"
        self.client = client

    async def process(self, message: fa.Message) -> None:
        pass


@pytest.mark.parametrize("handler", [no_message, two_messages, keyword_only])
@pytest.mark.parametrize(
    ("add", "takes"),
    [
        (lambda app, h: app.add_worker(h), "async def HANDLER(message)"),
        (lambda app, h: app.register("t", h), "async def HANDLER(message)"),
        (lambda app, h: app.add_worker(h, manual_ack=True), "async def HANDLER(delivery)"),
        (lambda app, h: app.add_batch_worker(h), "async def HANDLER(messages)"),
    ],
    ids=["add_worker", "register", "manual_ack", "add_batch_worker"],
)
def test_a_handler_that_cannot_take_a_message_is_refused_when_added(
    handler: Any, add: Any, takes: str
) -> None:
    name = handler.__name__
    with pytest.raises(fa.ConfigurationError) as caught:
        add(fa.WorkerApp(), handler)
    message = str(caught.value)
    assert name in message
    assert takes.replace("HANDLER", name) in message  # the signature it needs
    assert not isinstance(caught.value, TypeError)


PROCESS = "a Worker needs `async def process(self, message)`"


@pytest.mark.parametrize(
    ("worker", "says"),
    [
        (NoMessageWorker, f"NoMessageWorker.process cannot take a message: {PROCESS}"),
        (NoMessageWorker(), f"NoMessageWorker.process cannot take a message: {PROCESS}"),
        (BlockingWorker, f"BlockingWorker.process is not async: {PROCESS}"),
        (BlockingWorker(), f"BlockingWorker.process is not async: {PROCESS}"),
        (NeedsArguments, "NeedsArguments() is called with no arguments in each worker actor"),
    ],
    ids=["class", "instance", "sync class", "sync instance", "constructor"],
)
def test_a_worker_whose_process_cannot_take_a_message_is_refused(worker: Any, says: str) -> None:
    for add in (fa.WorkerApp().add_worker, functools.partial(fa.WorkerApp().register, "t")):
        with pytest.raises(fa.ConfigurationError) as caught:
            add(worker)
        assert says in str(caught.value)


async def test_handlers_that_take_one_message_are_accepted_and_run() -> None:
    seen: list[str] = []

    async def defaults(message: fa.Message, extra: str = "default") -> None:
        seen.append(f"defaults {message.payload} {extra}")

    async def varargs(*args: Any) -> None:
        seen.append(f"varargs {args[0].payload}")

    async def bound(prefix: str, message: fa.Message) -> None:
        seen.append(f"{prefix} {message.payload}")

    class Greeter:
        id = "greeter"
        timeout = None

        async def process(self, message: fa.Message) -> None:
            seen.append(f"greeter {message.payload}")

    backend = fa.MemoryBackend()
    app = (
        fa.WorkerApp()
        .register("a", defaults)
        .register("b", varargs)
        .register("c", functools.partial(bound, "partial"))
        .register("d", Greeter)
        .register("e", Greeter())
        .without_retry()
    )
    for kind in "abcde":
        await backend.publish("q", kind, properties=fa.MessageProperties(message_type=kind))
    async with fa.open_system(app.build(backend, "q")):
        with anyio.fail_after(60):
            await backend.join("q")
    assert sorted(seen) == [
        "defaults a default",
        "greeter d",
        "greeter e",
        "partial c",
        "varargs b",
    ]
    assert backend.dead_letters("q") == []


def test_a_misspelt_retry_option_names_the_accepted_ones() -> None:
    with pytest.raises(fa.ConfigurationError) as caught:
        fa.WorkerApp().with_retry(max_retry=3)
    assert str(caught.value) == (
        "with_retry() got an unknown option 'max_retry'; it accepts: max_retries, "
        "initial_backoff, max_backoff, multiplier, jitter, dead_on"
    )


def test_a_misspelt_reconnect_option_names_the_accepted_ones() -> None:
    with pytest.raises(fa.ConfigurationError) as caught:
        fa.WorkerApp().with_reconnect(min_dealy=1, give_up=3)
    assert str(caught.value) == (
        "with_reconnect() got unknown options 'give_up', 'min_dealy'; it accepts: "
        "give_up_after, min_delay, max_delay, random_factor, reset_after"
    )


def test_a_policy_and_its_options_together_are_refused() -> None:
    with pytest.raises(fa.ConfigurationError, match="a RetryPolicy or its options, not both"):
        fa.WorkerApp().with_retry(fa.RetryPolicy(), max_retries=3)
    with pytest.raises(fa.ConfigurationError, match="a Backoff or its options, not both"):
        fa.WorkerApp().with_reconnect(fa.Backoff(), min_delay=1)


def test_valid_options_still_build_the_policies() -> None:
    app = fa.WorkerApp().with_retry(max_retries=7).with_reconnect(min_delay=2, max_delay=3)
    assert app.options.retry == fa.RetryPolicy(max_retries=7)
    assert app.options.reconnect == fa.Backoff(min_delay=2, max_delay=3)
