"""HTTP for the openai backend, bounded in time and in size for every attempt.

The openai client's timeout applies to each phase of a request and to each read on its own: a
server that sends one byte every half second never trips it and holds a request for as long as it
likes, and a server may send any amount of data, all of which the client reads into memory. The
transport here, given to the client as its HTTP transport, bounds both:

* **Time.** Every attempt (one HTTP request: connecting, sending, waiting for the answer and reading
  all of it) has a deadline, `timeout_s` after it starts. The network backend shortens the timeout of
  every connect, read and write to the time left before the deadline, so an attempt ends at its
  deadline whatever the server does, with a `ReadTimeout` (or `ConnectTimeout`, `WriteTimeout`) that
  the client treats like any other timeout. The I/O happens in the thread that made the request and
  the connection is closed when it fails: no thread or socket outlives the attempt. (Name resolution
  is the one step no socket timeout reaches.)
* **Size.** At most `max_body_bytes` of a response body are read; a longer body is cut there, its
  connection closed, and the response is marked with `BODY_CUT` in its extensions.
* **Compression.** The transport asks for an uncompressed answer (`Accept-Encoding: identity`) and
  refuses a compressed one: its size bound would say nothing about what it inflates to.

A custom transport turns off the client's own reading of proxy settings from the environment, so the
transport reads them (`HTTP_PROXY`, `HTTPS_PROXY`, `ALL_PROXY`, `NO_PROXY`) the way the standard
library does, and sends those requests through the proxy with the same bounds.

The module works on the HTTP package the installed openai client is built on: `httpx` and `httpcore`
(openai 1 and 2) or `httpx2` and `httpcore2` (openai 3).
"""

from __future__ import annotations

import codecs
import importlib
import json
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import openai


def _http_packages() -> tuple[Any, Any]:
    for cls in openai.DefaultHttpxClient.__mro__:
        package = cls.__module__.partition(".")[0]
        if package.startswith("httpx"):
            return importlib.import_module(package), importlib.import_module(package.replace("httpx", "httpcore", 1))
    raise ImportError(f"cannot tell which HTTP package openai {openai.__version__} uses")


httpx, httpcore = _http_packages()

#: The extension a response carries (True) when its body was longer than the bound and was cut.
BODY_CUT = "dcase9.body_cut"


# --------------------------------------------------------------------------------------------------
# Time: one deadline per attempt, held by the thread that does the attempt's I/O


class _Deadline(threading.local):
    at: float | None = None
    message: str = ""


_deadline = _Deadline()


@contextmanager
def _until(at: float, message: str) -> Iterator[None]:
    saved = _deadline.at, _deadline.message
    _deadline.at, _deadline.message = at, message
    try:
        yield
    finally:
        _deadline.at, _deadline.message = saved


def _time_left(timeout: float | None, error: type[Exception]) -> float | None:
    """The timeout of one socket operation: its own, or the time left before the deadline if shorter."""
    if _deadline.at is None:
        return timeout
    left = _deadline.at - time.monotonic()
    if left <= 0:
        raise error(_deadline.message)
    return left if timeout is None else min(timeout, left)


class _DeadlineStream(httpcore.NetworkStream):
    """A connection whose every read and write ends by the deadline of the attempt using it."""

    def __init__(self, stream: Any):
        self._stream = stream

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._stream.read(max_bytes, _time_left(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._stream.write(buffer, _time_left(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._stream.close()

    def start_tls(self, ssl_context: Any, server_hostname: str | None = None,
                  timeout: float | None = None) -> _DeadlineStream:
        return _DeadlineStream(self._stream.start_tls(ssl_context, server_hostname,
                                                      _time_left(timeout, httpcore.ConnectTimeout)))

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)


class _DeadlineBackend(httpcore.NetworkBackend):
    """httpcore's own network backend, its connections wrapped in `_DeadlineStream`."""

    def __init__(self) -> None:
        self._backend = httpcore.SyncBackend()

    def connect_tcp(self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
                    socket_options: Any = None) -> _DeadlineStream:
        return _DeadlineStream(self._backend.connect_tcp(host, port, _time_left(timeout, httpcore.ConnectTimeout),
                                                         local_address, socket_options))

    def connect_unix_socket(self, path: str, timeout: float | None = None,
                            socket_options: Any = None) -> _DeadlineStream:
        return _DeadlineStream(self._backend.connect_unix_socket(path, _time_left(timeout, httpcore.ConnectTimeout),
                                                                 socket_options))

    def sleep(self, seconds: float) -> None:
        self._backend.sleep(seconds)


# --------------------------------------------------------------------------------------------------
# The transport


def _as_httpx_error(exc: Exception, message: str) -> Exception | None:
    """httpcore's exception as the httpx exception of the same name (what the openai client catches)."""
    for cls in type(exc).__mro__:
        target = getattr(httpx, cls.__name__, None)
        if isinstance(target, type) and issubclass(target, httpx.TransportError):
            return target(message)
    return None


@contextmanager
def _httpx_errors(at: float, deadline_message: str) -> Iterator[None]:
    """httpcore's errors as httpx's; a timeout says it was the deadline (every socket timeout ends there)."""
    try:
        with _until(at, deadline_message):
            yield
    except Exception as exc:
        timed_out = isinstance(exc, httpcore.TimeoutException)
        mapped = _as_httpx_error(exc, deadline_message if timed_out else str(exc))
        if mapped is None:
            raise
        raise mapped from exc


class BoundedBody(httpx.SyncByteStream):
    """A response body read until its attempt's deadline and up to `max_bytes`, then cut."""

    def __init__(self, stream: Any, at: float, message: str, max_bytes: int):
        self._stream, self._at, self._message, self._max_bytes = stream, at, message, max_bytes
        self.marks: dict[str, Any] = {}  # the response's extensions, set once the response exists

    def __iter__(self) -> Iterator[bytes]:
        chunks = iter(self._stream)
        received = 0
        while True:
            with _httpx_errors(self._at, self._message):  # set for each read: the caller's code runs in between
                chunk = next(chunks, None)
            if chunk is None:
                return
            if received + len(chunk) > self._max_bytes:
                self.marks[BODY_CUT] = True
                yield chunk[:self._max_bytes - received]
                return  # the caller closes the response: httpcore drops a connection left mid-body
            received += len(chunk)
            yield chunk

    def close(self) -> None:
        self._stream.close()


def _proxy_for(url: Any) -> str | None:
    """The proxy the environment names for `url`, as the standard library reads it (None: direct)."""
    proxies = urllib.request.getproxies()
    proxy = proxies.get(url.scheme) or proxies.get("all")
    if not proxy or urllib.request.proxy_bypass(url.host):
        return None
    return proxy if "://" in proxy else f"http://{proxy}"  # HTTP_PROXY=host:port, as httpx reads it


class BoundedTransport(httpx.BaseTransport):
    """An HTTP transport whose attempts end by `timeout_s` and read at most `max_body_bytes` of a body."""

    def __init__(self, *, timeout_s: float, max_body_bytes: int, connections: int):
        self.timeout_s, self.max_body_bytes, self.connections = timeout_s, max_body_bytes, connections
        self._ssl_context = httpx.create_ssl_context()
        self._pools: dict[str | None, Any] = {}
        self._lock = threading.Lock()

    def _pool(self, proxy: str | None) -> Any:
        with self._lock:
            if proxy not in self._pools:
                # One connection per worker thread: no request waits for a connection.
                common = dict(ssl_context=self._ssl_context, max_connections=self.connections,
                              max_keepalive_connections=self.connections, keepalive_expiry=5.0,
                              network_backend=_DeadlineBackend())
                if proxy is None:
                    self._pools[proxy] = httpcore.ConnectionPool(**common)
                else:
                    self._pools[proxy] = self._proxy_pool(httpx.Proxy(url=proxy), common)
            return self._pools[proxy]

    @staticmethod
    def _proxy_pool(proxy: Any, common: dict[str, Any]) -> Any:
        url = httpcore.URL(scheme=proxy.url.raw_scheme, host=proxy.url.raw_host, port=proxy.url.port,
                           target=proxy.url.raw_path)
        if proxy.url.scheme in ("socks5", "socks5h"):
            return httpcore.SOCKSProxy(proxy_url=url, proxy_auth=proxy.raw_auth, **common)
        return httpcore.HTTPProxy(proxy_url=url, proxy_auth=proxy.raw_auth, proxy_headers=proxy.headers.raw, **common)

    def handle_request(self, request: Any) -> Any:
        at = time.monotonic() + self.timeout_s
        message = f"no complete answer within {self.timeout_s:g} s, the limit for the whole request"
        request.headers["Accept-Encoding"] = "identity"
        core_request = httpcore.Request(
            method=request.method,
            url=httpcore.URL(scheme=request.url.raw_scheme, host=request.url.raw_host, port=request.url.port,
                             target=request.url.raw_path),
            headers=request.headers.raw, content=request.stream, extensions=request.extensions)
        with _httpx_errors(at, message):
            response = self._pool(_proxy_for(request.url)).handle_request(core_request)
        headers = httpx.Headers(response.headers)
        encoding = headers.get("Content-Encoding", "identity").strip().lower()
        if encoding != "identity":
            response.close()
            raise httpx.DecodingError(f"the server compressed its answer (Content-Encoding: {encoding}) though it "
                                      f"was asked not to; its size could not be bounded")
        body = BoundedBody(response.stream, at, message, self.max_body_bytes)
        result = httpx.Response(status_code=response.status, headers=response.headers, stream=body,
                                extensions=response.extensions, request=request)
        body.marks = result.extensions
        return result

    def close(self) -> None:
        with self._lock:
            pools, self._pools = list(self._pools.values()), {}
        for pool in pools:
            pool.close()


# --------------------------------------------------------------------------------------------------
# What a cut body still holds


_NOTHING = object()


def parse_json_prefix(data: bytes, max_depth: int = 32) -> Any:
    """The JSON value `data` begins with when `data` is a JSON document cut short.

    Objects and arrays hold what was complete before the cut; a string cut short is kept up to the
    cut; a number or literal at the cut is left out (it may have had more digits). Raises ValueError
    where the text before the cut is not JSON, or nests deeper than `max_depth`.
    """
    text = codecs.getincrementaldecoder("utf-8")("replace").decode(data, final=False)  # holds back a cut character
    value, _, _ = _prefix_value(text, _skip(text, 0), max_depth)
    return None if value is _NOTHING else value


_SCALARS = json.JSONDecoder()


def _skip(text: str, at: int) -> int:
    while at < len(text) and text[at] in " \t\r\n":
        at += 1
    return at


def _prefix_value(text: str, at: int, depth: int) -> tuple[Any, int, bool]:
    """(value or _NOTHING, where it ends, whether it is complete)."""
    if at >= len(text):
        return _NOTHING, at, False
    opening = text[at]
    if opening in "{[":
        if depth == 0:
            raise ValueError("not a completion: nested too deeply")
        return _prefix_container(text, at, depth)
    if opening == '"':
        return _prefix_string(text, at)
    try:
        value, end = _SCALARS.raw_decode(text, at)
    except json.JSONDecodeError:
        if any(mark in text[at:] for mark in ",]}"):
            raise ValueError(f"not JSON at character {at}") from None
        return _NOTHING, len(text), False  # a literal or number cut short
    if end == len(text):
        return _NOTHING, end, False  # a number may have had more digits
    return value, end, True


def _prefix_container(text: str, at: int, depth: int) -> tuple[Any, int, bool]:
    is_object = text[at] == "{"
    closing = "}" if is_object else "]"
    out: Any = {} if is_object else []
    at = _skip(text, at + 1)
    if at < len(text) and text[at] == closing:
        return out, at + 1, True
    while True:
        key = None
        if is_object:
            if at >= len(text):
                return out, at, False
            if text[at] != '"':
                raise ValueError(f"not JSON at character {at}: a key must be a string")
            key, at, complete = _prefix_string(text, at)
            at = _skip(text, at)
            if not complete or at >= len(text):
                return out, at, False
            if text[at] != ":":
                raise ValueError(f"not JSON at character {at}: ':' expected")
            at = _skip(text, at + 1)
        value, at, complete = _prefix_value(text, at, depth - 1)
        if value is not _NOTHING:
            if is_object:
                out[key] = value
            else:
                out.append(value)
        at = _skip(text, at)
        if not complete or at >= len(text):
            return out, at, False
        if text[at] == closing:
            return out, at + 1, True
        if text[at] != ",":
            raise ValueError(f"not JSON at character {at}: ',' or '{closing}' expected")
        at = _skip(text, at + 1)


def _prefix_string(text: str, at: int) -> tuple[str, int, bool]:
    try:
        value, end = json.decoder.scanstring(text, at + 1)  # type: ignore[attr-defined]
        return value, end, True
    except json.JSONDecodeError:
        pass
    rest = text[at + 1:]
    # Cut short, perhaps inside an escape (`\`, `\u00`): the longest prefix that closes cleanly.
    for keep in range(len(rest), max(len(rest) - 6, 0) - 1, -1):
        try:
            value, end = json.decoder.scanstring(rest[:keep] + '"', 0)  # type: ignore[attr-defined]
        except json.JSONDecodeError:
            continue
        if end == keep + 1:
            return value, len(text), False
    raise ValueError(f"not JSON: a bad string at character {at}")
