"""Credentials kept out of what is shown: URLs with their passwords as ``***``.

Every layer that prints a broker or store URL (errors, logs, reprs, the CLI) goes
through these, so a password never reaches logs, errors, metrics or health output.
"""

from __future__ import annotations

from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit, urlunsplit


def redact(url: str) -> str:
    """Return ``url`` with its password (in the authority or the query) as ``***``."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except (TypeError, ValueError):
        return "<unparseable URL>"
    netloc = parts.netloc
    if password is not None:
        host = netloc.rpartition("@")[2]
        netloc = f"{parts.username or ''}:***@{host}"
    query = parts.query
    if "password" in query:
        query = urlencode([(k, "***" if k == "password" else v) for k, v in parse_qsl(query, True)])
    return urlunsplit(parts._replace(netloc=netloc, query=query))


def redact_in(text: str, url: str) -> str:
    """Return ``text`` (an error's message) without ``url``'s password, however quoted.

    Clients print a URL their own way (normalised, percent-decoded, in a repr), so
    the password itself is replaced wherever it stands, raw and decoded.
    """
    text = text.replace(url, redact(url))
    for form in secrets_of(url):
        text = text.replace(form, "***")
    return text


def secrets_of(url: str) -> list[str]:
    """The password of ``url`` (authority or query) in each form a client may print it."""
    try:
        parts = urlsplit(url)
        found = [parts.password, *(v for k, v in parse_qsl(parts.query) if k == "password")]
    except (TypeError, ValueError):
        return []
    return [
        form
        for secret in found
        if secret
        for form in {secret, unquote(secret), quote(unquote(secret), safe="")}
    ]
