"""A broker URL's password never reaches an error's text, however a client prints it."""

from __future__ import annotations

import pytest

from foxactors._redact import redact, redact_in

URL = "amqp://worker:s%40cret%2Fpw@broker:5672/vhost"


@pytest.mark.parametrize(
    "text",
    [
        f"cannot connect to {URL}",
        "cannot connect to URL('amqp://worker:s@cret/pw@broker:5672/vhost')",
        "auth failed for worker with password s%40cret%2Fpw",
        "auth failed: s@cret/pw",
    ],
)
def test_the_password_is_gone_in_every_form(text: str) -> None:
    cleaned = redact_in(text, URL)
    assert "s@cret" not in cleaned
    assert "s%40cret" not in cleaned
    assert "***" in cleaned


def test_a_password_in_the_query_is_gone_too() -> None:
    url = "redis://broker:6379/0?password=hunter2"
    assert "hunter2" not in redact_in(f"error from {url}: hunter2 refused", url)
    assert redact(url) == "redis://broker:6379/0?password=%2A%2A%2A"
