"""The pipeline's own control messages: typed records, typed replies."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, assert_type

import anyio
import attrs
import pytest

import foxactors as fa
from foxactors.backends import Source
from foxactors.pipeline import _messages

pytestmark = pytest.mark.anyio

PIPELINE = Path(fa.pipeline.__file__).parent


def test_control_messages_are_frozen_slotted_records() -> None:
    control = [
        obj
        for obj in vars(_messages).values()
        if isinstance(obj, type) and obj.__module__ == _messages.__name__ and attrs.has(obj)
    ]
    names = {cls.__name__ for cls in control}
    assert {"StopIntake", "ReturnPending", "ReleaseDue", "FlushDue", "Retire"} <= names
    assert {"Recycle", "Handback", "CurrentBreaker"} <= names
    for cls in control:
        assert "__slots__" in vars(cls), cls
        assert "__dict__" not in dir(cls), cls
        instance = cls(*(None for _ in attrs.fields(cls)))
        with pytest.raises(attrs.exceptions.FrozenInstanceError):
            instance.extra = 1  # type: ignore[attr-defined]


def test_no_control_message_is_a_bare_string() -> None:
    for module in PIPELINE.glob("*.py"):
        found = re.findall(r'^\s*(\w+)\s*=\s*"foxactors\.', module.read_text(), re.MULTILINE)
        assert found == [], f"{module.name}: {found} are strings; declare them in _messages"


class Answers(fa.Actor[Any]):
    async def receive(self, message: Any) -> Any:
        if isinstance(message, _messages.ReturnPending):
            return 3
        return None


async def test_a_request_types_the_reply_of_ask() -> None:
    async with fa.open_system(fa.ChildSpec("answers", Answers)) as system:
        returned = await system.root.ask(_messages.RETURN_PENDING)
        assert_type(returned, int)  # checked by mypy: a Request[int] is answered by an int
        assert returned == 3
        untyped = await system.root.ask("anything")
        assert_type(untyped, Any)
        assert untyped is None


async def test_stop_intake_answers_with_the_consumer_source() -> None:
    backend = fa.MemoryBackend()

    async def handle(message: fa.Message) -> None:
        pass

    app = fa.WorkerApp().add_worker(handle)
    async with fa.open_system(app.build(backend, "jobs")) as system:
        await anyio.wait_all_tasks_blocked()  # the consumer waits for deliveries
        source = await system.ref("consumer").ask(_messages.STOP_INTAKE)
        assert_type(source, Source)
        assert source.unsettled == 0
        await backend.publish("jobs", 1)
        await anyio.wait_all_tasks_blocked()
        assert backend.queue_statistics("jobs").ready == 1  # intake stopped: not pulled
