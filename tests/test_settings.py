"""`foxactors.Settings`: FOXACTORS_* variables over code, options over both; what it builds."""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import foxactors as fa
from foxactors import _cli_settings, backends
from foxactors._cli import main
from foxactors._settings import Settings, SettingsError, near_misses

ROOT = Path(__file__).resolve().parent.parent
SECRET = "s3cr%40t"  # percent-encoded, as a URL carries an '@' in a password
REDIS = f"redis://:{SECRET}@127.0.0.1:6390/0"


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No FOXACTORS_* variable of the machine leaks into a test."""
    for name in list(os.environ):
        if name.upper().startswith("FOXACTORS_"):
            monkeypatch.delenv(name)


async def _ignore(message: fa.Message) -> None:
    pass


def worker() -> fa.WorkerApp:
    return fa.WorkerApp("svc").add_worker(_ignore)


#: ``foxactors run tests.test_settings:unbound``: a WorkerApp that binds no broker.
unbound = worker()


def test_the_environment_overrides_code_which_overrides_the_defaults(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert Settings().concurrency is None  # unset: the app's own value stands
    assert Settings(concurrency=4).concurrency == 4
    monkeypatch.setenv("FOXACTORS_CONCURRENCY", "16")
    monkeypatch.setenv("foxactors_queue", "emails")  # names ignore case
    settings = Settings(concurrency=4, prefetch=50)
    assert (settings.concurrency, settings.prefetch, settings.queue) == (16, 50, "emails")
    assert set(settings.environment) == {"FOXACTORS_CONCURRENCY", "FOXACTORS_QUEUE"}


def test_options_override_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FOXACTORS_LOG_LEVEL", "ERROR")  # values of choices ignore case
    monkeypatch.setenv("FOXACTORS_PREFETCH", "7")
    settings = Settings()
    assert settings.log_level == "error"
    chosen = settings.override(log_level="debug", http_port=None)  # None: not given
    assert (chosen.log_level, chosen.prefetch) == ("debug", 7)
    assert chosen.environment == ("FOXACTORS_PREFETCH",)
    assert settings.override() is settings


def test_an_empty_variable_is_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FOXACTORS_QUEUE", "")
    monkeypatch.setenv("FOXACTORS_CONCURRENCY", "")
    assert Settings(queue="jobs").queue == "jobs"
    assert Settings().environment == ()


@pytest.mark.parametrize(
    ("name", "value", "error"),
    [
        ("FOXACTORS_CONCURRENCY", "abc", "FOXACTORS_CONCURRENCY='abc': must be an integer >= 1"),
        ("FOXACTORS_PREFETCH", "0", "FOXACTORS_PREFETCH='0': must be an integer >= 1"),
        ("FOXACTORS_MAX_RETRIES", "-1", "FOXACTORS_MAX_RETRIES='-1': must be an integer >= 0"),
        ("FOXACTORS_RETRY_BACKOFF", "nan", "'nan': must be a number of seconds >= 0"),
        ("FOXACTORS_HTTP_PORT", "70000", "'70000': must be an integer from 0 to 65535"),
        ("FOXACTORS_LOG_FORMAT", "xml", "FOXACTORS_LOG_FORMAT='xml': must be console or json"),
        ("FOXACTORS_BROKER", "kafka", "must be one of rabbitmq, redis, memory"),
        ("FOXACTORS_RABBITMQ_URL", "redis://h", "must be a URL starting with amqp:// or amqps://"),
    ],
)
def test_a_wrong_variable_is_named_with_the_fix(
    name: str, value: str, error: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError, match=re.escape(error)) as raised:
        Settings(concurrency=2)  # a good code value does not hide the bad variable
    assert name in str(raised.value)
    assert "\n" not in str(raised.value)
    assert isinstance(raised.value, fa.ConfigurationError)


def test_a_wrong_keyword_or_option_is_named_as_written() -> None:
    with pytest.raises(SettingsError, match=r"^prefetch=True: must be an integer >= 1$"):
        Settings(prefetch=True)  # a boolean is not a count
    with pytest.raises(SettingsError, match=r"'concurency' is not a setting; the settings are"):
        Settings(concurency=3)
    with pytest.raises(SettingsError, match=r"^--http-port=-1: must be an integer from 0"):
        Settings().override(http_port=-1)
    both = "queue='': must be a non-empty queue name; concurrency='x': must be an integer >= 1"
    with pytest.raises(SettingsError, match=re.escape(both)):
        Settings(concurrency="x", queue="")


def test_passwords_never_show(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FOXACTORS_REDIS_URL", REDIS)
    settings = Settings(rabbitmq_url="amqp://guest:hunter2@127.0.0.1/")
    shown = [repr(settings), str(settings), json.dumps(settings.redacted())]
    for text in shown:
        assert SECRET not in text
        assert "hunter2" not in text
        assert "redis://:***@127.0.0.1:6390/0" in text
    assert settings.redis_url == REDIS  # the real value stays usable
    monkeypatch.setenv("FOXACTORS_REDIS_URL", f"http://:{SECRET}@h/0")
    with pytest.raises(SettingsError, match=r"'http://:\*\*\*@h/0': must be a URL") as raised:
        Settings()
    assert SECRET not in str(raised.value)


def test_the_backend_is_the_broker_the_settings_name(monkeypatch: pytest.MonkeyPatch) -> None:
    redis = Settings(redis_url=REDIS).backend()
    assert isinstance(redis, backends.RedisBackend)
    assert redis.url == REDIS
    rabbit = Settings(rabbitmq_url="amqps://u:p@host/vhost").backend()
    assert isinstance(rabbit, backends.RabbitMQBackend)
    assert isinstance(Settings(broker="memory").backend(), fa.MemoryBackend)
    both = Settings(rabbitmq_url="amqp://h/", redis_url=REDIS)
    with pytest.raises(SettingsError, match="both set: choose one with FOXACTORS_BROKER"):
        both.backend()
    monkeypatch.setenv("FOXACTORS_BROKER", "redis")
    assert isinstance(Settings(rabbitmq_url="amqp://h/", redis_url=REDIS).backend(), type(redis))
    with pytest.raises(SettingsError, match="FOXACTORS_BROKER=redis needs FOXACTORS_REDIS_URL"):
        Settings().backend()
    monkeypatch.delenv("FOXACTORS_BROKER")
    with pytest.raises(SettingsError, match="no broker: set FOXACTORS_RABBITMQ_URL or"):
        Settings().backend()


def test_apply_changes_what_was_said_and_nothing_else() -> None:
    app = worker().with_concurrency_limit(3).with_retry(max_retries=5, multiplier=3)
    Settings(prefetch=40, retry_backoff=0.5).apply(app)
    options = app.options
    assert (options.concurrency, options.prefetch) == (3, 40)
    assert options.retry == fa.RetryPolicy(max_retries=5, multiplier=3, initial_backoff=0.5)
    assert options.backend is None  # no broker said: none bound
    off = Settings(max_retries=2).apply(worker().without_retry())
    assert off.options.retry == fa.RetryPolicy(max_retries=2)  # retries turned on


def test_apply_binds_the_broker_and_the_queue() -> None:
    app = Settings(broker="memory", queue="emails").apply(worker())
    assert isinstance(app.options.backend, fa.MemoryBackend)
    assert app.options.queue == "emails"
    mine = fa.MemoryBackend()
    kept = Settings(broker="memory", queue="other").apply(
        worker().with_backend(mine, "q"), keep_backend=True
    )
    assert (kept.options.backend, kept.options.queue) == (mine, "other")
    with pytest.raises(SettingsError, match="the broker is set but no queue: set FOXACTORS_QUEUE"):
        Settings(broker="memory").apply(worker())


def test_retry_settings_that_do_not_fit_name_their_variables(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FOXACTORS_RETRY_BACKOFF", "600")  # above the app's max_backoff (300)
    with pytest.raises(SettingsError, match=r"^FOXACTORS_RETRY_BACKOFF=600\.0: max_backoff"):
        Settings().apply(worker())


def test_every_variable_is_known_to_the_command_and_documented() -> None:
    variables = tuple(f"FOXACTORS_{name.upper()}" for name in Settings.model_fields)
    assert variables == _cli_settings.VARIABLES
    page = (ROOT / "docs" / "settings.md").read_text()
    for name in variables:
        assert re.search(rf"^\| `{name}` \|", page, re.MULTILINE), name
    assert fa.Settings is Settings
    assert (Settings.__doc__ or "").strip()


def test_without_the_extra_a_variable_stops_the_command(monkeypatch: pytest.MonkeyPatch) -> None:
    for module in ("foxactors._settings", "pydantic_settings"):
        monkeypatch.delitem(sys.modules, module, raising=False)
    monkeypatch.setitem(sys.modules, "pydantic_settings", None)  # "import" fails
    with pytest.raises(ImportError, match=re.escape("pip install 'foxactors[settings]'")):
        fa.Settings  # noqa: B018 - the lookup is what is tested
    args = argparse.Namespace(log_format=None, log_level="debug", http_host=None, http_port=9000)
    chosen = _cli_settings.run_settings(args)  # nothing set: runs as before
    assert chosen == _cli_settings.RunSettings(None, "console", "debug", ("127.0.0.1", 9000))
    monkeypatch.setenv("FOXACTORS_PREFETCH", "5")
    with pytest.raises(
        fa.ConfigurationError, match=r"^FOXACTORS_PREFETCH is set, but .*\[settings\]"
    ):
        _cli_settings.run_settings(args)


@pytest.mark.parametrize(
    ("argv", "environment", "error"),
    [
        ([], {"FOXACTORS_CONCURRENCY": "abc"}, "FOXACTORS_CONCURRENCY='abc': must be an integer"),
        (["--http-port", "-1"], {}, "--http-port=-1: must be an integer from 0 to 65535"),
    ],
)
def test_the_command_stops_on_a_wrong_value_with_one_line(
    argv: list[str],
    environment: dict[str, str],
    error: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    assert main(["run", "tests.apps:bound_app", *argv]) == 1
    out, err = capsys.readouterr()
    assert err.startswith(f"foxactors: {error}")
    assert err.count("\n") == 1
    assert out == ""


def test_a_variable_that_looks_like_a_setting_is_a_near_miss(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FOXACTORS_CONCURENCY", "16")
    monkeypatch.setenv("foxactors_redis_ulr", "redis://127.0.0.1:1/0")
    monkeypatch.setenv("FOXACTORS_QUEUE", "emails")  # a setting: read, not a miss
    monkeypatch.setenv("FOXACTORS_TEST_QUEUE", "other")  # nothing like a setting: the app's own
    assert near_misses() == [
        ("FOXACTORS_CONCURENCY", "FOXACTORS_CONCURRENCY"),
        ("FOXACTORS_REDIS_ULR", "FOXACTORS_REDIS_URL"),
    ]
    assert Settings().concurrency is None  # the typo changed nothing


def test_an_app_without_a_broker_says_which_variables_give_one(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["run", "tests.test_settings:unbound", "--log-format", "json"]) == 1
    failed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert failed[-1]["event"] == "system.failed"
    assert (
        "set FOXACTORS_RABBITMQ_URL or FOXACTORS_REDIS_URL, and FOXACTORS_QUEUE"
        in (failed[-1]["error"])
    )


def test_foxactors_run_logs_the_settings_it_runs_with() -> None:
    process = subprocess.Popen(
        [
            *(sys.executable, "-m", "foxactors", "run", "tests.test_settings:unbound"),
            *("--log-level", "info", "--log-format", "json"),  # options beat the variables
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={
            **{k: v for k, v in os.environ.items() if not k.upper().startswith("FOXACTORS_")},
            "PYTHONPATH": os.pathsep.join([str(Path(fa.__file__).parents[1]), str(ROOT)]),
            "FOXACTORS_LOG_LEVEL": "error",
            "FOXACTORS_LOG_FORMAT": "console",
            "FOXACTORS_BROKER": "memory",
            "FOXACTORS_QUEUE": "emails",
            "FOXACTORS_CONCURRENCY": "3",
            "FOXACTORS_REDIS_URL": REDIS,
            "FOXACTORS_PREFETCHH": "7",  # a typo: no setting reads it
            "FOXACTORS_JOBS_STORE_URL": "redis://127.0.0.1:1/0",  # the app's own variable
        },
    )
    lines: list[dict[str, Any]] = []
    try:
        assert process.stdout is not None
        for raw in process.stdout:  # the process writes until it is stopped: no deadline needed
            lines.append(json.loads(raw))
            if lines[-1]["event"] == "intake.consuming":
                break
        process.send_signal(signal.SIGTERM)
        rest, _ = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=30)
    assert process.returncode == 0, rest
    settings = next(line for line in lines if line["event"] == "settings")
    (typo,) = [line for line in lines if line["event"] == "settings.unknown_variable"]
    assert (typo["level"], typo["variable"], typo["did_you_mean"]) == (
        "warning",
        "FOXACTORS_PREFETCHH",
        "FOXACTORS_PREFETCH",
    )
    assert settings["level"] == "info"
    assert (settings["queue"], settings["concurrency"], settings["prefetch"]) == ("emails", 3, 100)
    assert (settings["log_level"], settings["log_format"]) == ("info", "json")
    assert settings["backend"] == "MemoryBackend"
    assert settings["redis_url"] == "redis://:***@127.0.0.1:6390/0"
    assert settings["environment"] == [
        "FOXACTORS_REDIS_URL",
        "FOXACTORS_BROKER",
        "FOXACTORS_QUEUE",
        "FOXACTORS_CONCURRENCY",
    ]
    assert SECRET not in json.dumps(lines) + rest
