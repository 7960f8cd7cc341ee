"""Can the Hugging Face Hub be reached? One quick answer before a Hub library retries for minutes.

Without network and without `HF_HUB_OFFLINE`, huggingface_hub and `datasets` retry each request
(a tokenizer took 95 s and twenty "Retrying" lines to fail, and the error named neither the network
nor the cache). A Hub id in a recipe is first checked here: one TCP connection to the endpoint
(`HF_ENDPOINT`, through the proxy the environment names), within a few seconds. When it fails,
the caller says so and how to use the local cache instead (`HF_HUB_OFFLINE=1`). A leaf: nothing
but the standard library, so a tokenizer spec can ask it without loading any Hub code.
"""

from __future__ import annotations

import functools
import os
import socket

DEFAULT_ENDPOINT = "https://huggingface.co"
# Long enough for a slow link to open a connection, short enough that a user without one hears
# it at once (the libraries' own timeouts are 10 s per try, then retries).
PROBE_TIMEOUT_S = float(os.environ.get("SHARDPREP_HUB_PROBE_TIMEOUT_S", "3"))
OFFLINE_HINT = "set HF_HUB_OFFLINE=1 to use the Hugging Face cache on this machine without network"


def offline() -> bool:
    """Whether HF_HUB_OFFLINE asks for the cache only (as huggingface_hub reads it)."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def endpoint() -> str:
    return (os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")


def _target(url: str) -> tuple[str, int, str]:
    """(host, port, how it is named in a message): the endpoint, or the proxy that carries it."""
    import urllib.parse
    import urllib.request  # http.client, email, ssl: only when a Hub id is looked up

    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    proxy = urllib.request.getproxies().get(parts.scheme)
    if proxy and not urllib.request.proxy_bypass(host):
        p = urllib.parse.urlsplit(proxy if "://" in proxy else f"http://{proxy}")
        if p.hostname:
            return p.hostname, p.port or 80, f"proxy {p.hostname}:{p.port or 80}"
    return host, port, f"{host}:{port}"


@functools.lru_cache(maxsize=4)
def _probe(url: str) -> str | None:
    host, port, name = _target(url)
    try:
        socket.create_connection((host, port), timeout=PROBE_TIMEOUT_S).close()
    except socket.gaierror as exc:
        return f"cannot resolve {host}: {exc.strerror or exc}"
    except TimeoutError:
        return f"no answer from {name} within {PROBE_TIMEOUT_S:g} s"
    except OSError as exc:
        return f"{name}: {exc.strerror or exc}"
    return None


def unreachable() -> str | None:
    """None when the Hub endpoint accepts a connection; otherwise why not, in a few words.
    Asked once per process and endpoint."""
    return _probe(endpoint())


def unreachable_message(what: str, reason: str) -> str:
    return f"{what}: the Hugging Face Hub ({endpoint()}) cannot be reached ({reason})"
