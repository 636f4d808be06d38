"""Fetch: download each product's image inside ``mapPartitions``, one pooled session per task.

Every row comes out with ``fetch_status`` ok or failed and a reason. Transient failures (5xx,
429 with Retry-After, connection errors, time-outs) are retried with exponential backoff and
jitter, within one time budget per URL for all of its attempts and waits together
(``fetch.url_budget_s``). A body is kept only when its leading bytes are an image and it fits in
``fetch.max_bytes``; a slow drip is cut once it runs below ``fetch.min_bytes_per_s``, and any
download at ``fetch.total_timeout_s``. Only http and https; redirects are followed by hand so that
each hop passes the URL policy too, and every connection is checked at the address it reached
(see :class:`UrlPolicy`).

Downloads run in a streaming pool (:meth:`Fetcher.stream`): as one ends the next starts, so a slow
URL holds only its own thread; waits between attempts hold none. At most
``fetch.max_connections_per_host`` downloads of one host run at once, and a host that keeps timing
out is cut off by a circuit breaker (:class:`HostBreaker`, reason ``host_circuit_open``). Results
leave in the order they finish. ``dedup/fetchstore.py`` commits them as they come.
"""

from __future__ import annotations

import heapq
import ipaddress
import random
import socket
import threading
import time
from collections import Counter, deque
from collections.abc import Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urljoin, urlsplit

import requests
import urllib3
from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from dedup.imaging import sniff_format
from dedup.schema import FETCH_SCHEMA
from dedup.settings import FetchSettings

RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504})


class UrlPolicy:
    """Which URLs may be fetched: http(s) only; private, loopback and link-local targets refused
    unless their host is in ``fetch.allowed_hosts``.

    :meth:`check` judges the URL before anything is sent: scheme, host and literal IP addresses.
    A host *name* is judged where it is connected to: :meth:`check_peer` looks at the address of
    the socket each new connection actually reached, before the request goes out. Resolving the
    name here and letting the HTTP client resolve it again would leave a gap (DNS rebinding: a
    name that passes the check, then connects to 127.0.0.1 or a metadata endpoint).

    >>> policy = UrlPolicy(allowed_hosts=["127.0.0.1"], block_private_networks=True)
    >>> policy.check("http://127.0.0.1:8000/a.jpg"), policy.check("ftp://example.com/a.jpg")
    (None, 'blocked_scheme')
    >>> policy.check("http://169.254.169.254/latest/meta-data")
    'blocked_address'
    >>> policy.check_peer("images.example.com", "10.1.2.3"), policy.check_peer("127.0.0.1", "127.0.0.1")
    ('blocked_address', None)
    """

    def __init__(self, allowed_hosts: Iterable[str], block_private_networks: bool) -> None:
        self.allowed_hosts = {host.lower() for host in allowed_hosts}
        self.block_private_networks = block_private_networks

    def _exempt(self, host: str) -> bool:
        return host.lower() in self.allowed_hosts or not self.block_private_networks

    def check(self, url: str) -> str | None:
        """None when ``url`` may be requested, else the reason it may not."""
        parts = urlsplit(url)
        if parts.scheme.lower() not in ("http", "https"):
            return "blocked_scheme"
        host = (parts.hostname or "").lower()
        if not host:
            return "invalid_url"
        if self._exempt(host):
            return None
        try:
            address = ipaddress.ip_address(host.split("%")[0])
        except ValueError:
            return None  # a name: judged by check_peer on the address the connection reaches
        return None if _is_public(address) else "blocked_address"

    def check_peer(self, host: str, peer_address: str) -> str | None:
        """None when a connection for ``host`` may use the socket connected to ``peer_address``."""
        if self._exempt(host):
            return None
        return None if _is_public(ipaddress.ip_address(peer_address.split("%")[0])) else "blocked_address"


def _is_public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    return address.is_global and not address.is_multicast


class BlockedAddress(Exception):
    """A connection reached an address the URL policy refuses; nothing was sent on it."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _CheckedPeer:
    """Mixed into urllib3's connection classes: every new socket's peer address passes the policy
    before the request is written to it (the address checked is the address used)."""

    policy: UrlPolicy

    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()  # type: ignore[misc]
        refusal = self.policy.check_peer(self.host, sock.getpeername()[0])  # type: ignore[attr-defined]
        if refusal:
            sock.close()
            raise BlockedAddress(refusal)
        return sock


class _CheckedAdapter(requests.adapters.HTTPAdapter):
    """An adapter whose connection pools make :class:`_CheckedPeer` connections."""

    def __init__(self, policy: UrlPolicy, **kwargs: Any) -> None:
        self.policy = policy
        super().__init__(**kwargs)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        pools = {}
        for scheme, pool in (("http", urllib3.HTTPConnectionPool), ("https", urllib3.HTTPSConnectionPool)):
            connection = type(f"Checked{pool.ConnectionCls.__name__}", (_CheckedPeer, pool.ConnectionCls),
                              {"policy": self.policy})  # fmt: skip
            pools[scheme] = type(f"Checked{pool.__name__}", (pool,), {"ConnectionCls": connection})
        self.poolmanager.pool_classes_by_scheme = pools


@dataclass
class FetchResult:
    """What became of one download."""

    status: str
    reason: str | None
    http_status: int | None
    attempts: int
    image_format: str | None
    content: bytes | None
    elapsed_ms: int


class _Transient(Exception):
    """A failure worth another attempt; ``wait_s`` overrides the backoff (Retry-After)."""

    def __init__(self, reason: str, http_status: int | None = None, wait_s: float | None = None):
        super().__init__(reason)
        self.reason, self.http_status, self.wait_s = reason, http_status, wait_s


class _Permanent(Exception):
    def __init__(self, reason: str, http_status: int | None = None):
        super().__init__(reason)
        self.reason, self.http_status = reason, http_status


def _retry_after_s(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        try:
            return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
        except (TypeError, ValueError):
            return None


def host_of(url: str) -> str:
    """The key of the host a URL is served by (scheme, name and port), for per-host limits.

    >>> host_of("http://Img.Example.com/a.jpg"), host_of("https://img.example.com:8443/b.jpg")
    ('http://img.example.com', 'https://img.example.com:8443')
    """
    parts = urlsplit(url)
    return f"{parts.scheme.lower()}://{parts.netloc.lower()}"


class HostBreaker:
    """A circuit breaker per host: a host that keeps failing to answer is not tried for a while.

    It opens when ``failures`` attempts in a row on one host ended without an answer (connect or
    read time-outs, refused or reset connections) and the host has not answered for ``after_s``
    (so a burst of time-outs right after answers, as at the end of a task when only the hung URLs
    are left, does not open it). While open, attempts on the host are refused at once. After
    ``cooldown_s`` one probe goes through: an answer closes the breaker, a failure opens it again.
    Any HTTP answer, a 404 or a 503 too, counts as the host answering. Thread-safe.

    >>> now = [0.0]
    >>> breaker = HostBreaker(failures=2, after_s=10, cooldown_s=30, clock=lambda: now[0])
    >>> breaker.allow("h"), breaker.record("h", answered=False), breaker.record("h", answered=False)
    (True, None, None)
    >>> breaker.allow("h")  # two failures, but the host was first tried 0 s ago
    True
    >>> now[0] = 12.0; breaker.record("h", answered=False); breaker.allow("h")
    False
    >>> now[0] = 43.0; breaker.allow("h"), breaker.allow("h")  # one probe after the cooldown
    (True, False)
    >>> breaker.record("h", answered=True); breaker.allow("h")
    True
    """

    def __init__(self, failures: int, after_s: float, cooldown_s: float, clock=time.monotonic) -> None:
        self.failures, self.after_s, self.cooldown_s, self.clock = max(1, failures), after_s, cooldown_s, clock
        self._lock = threading.Lock()
        self._hosts: dict[str, dict[str, Any]] = {}
        self.opened = 0  # how many times a breaker opened

    def _state(self, host: str) -> dict[str, Any]:
        fresh = {"failed": 0, "answered_at": self.clock(), "opened_at": None, "probe": False}
        return self._hosts.setdefault(host, fresh)

    def allow(self, host: str) -> bool:
        """May an attempt on ``host`` start now?"""
        with self._lock:
            state = self._state(host)
            if state["opened_at"] is None:
                return True
            if not state["probe"] and self.clock() - state["opened_at"] >= self.cooldown_s:
                state["probe"] = True
                return True
            return False

    def record(self, host: str, answered: bool) -> None:
        """The outcome of one attempt on ``host``: did it answer at all?"""
        with self._lock:
            state, now = self._state(host), self.clock()
            if answered:
                state.update(failed=0, answered_at=now, opened_at=None, probe=False)
                return
            state["failed"] += 1
            if state["probe"]:
                state.update(opened_at=now, probe=False)
            elif (
                state["opened_at"] is None
                and state["failed"] >= self.failures
                and now - state["answered_at"] >= self.after_s
            ):
                state["opened_at"] = now
                self.opened += 1


@dataclass
class Download:
    """One URL on its way through the pool: its attempts so far and its time budget."""

    key: Any
    url: str
    host: str
    started: float
    deadline: float  # all attempts and waits together end here (fetch.url_budget_s)
    attempts: int = 0
    reason: str | None = None
    http_status: int | None = None


class Fetcher:
    """Downloads images over one pooled ``requests.Session`` (shared by a task's threads)."""

    def __init__(self, settings: FetchSettings, breaker: HostBreaker | None = None) -> None:
        self.settings = settings
        self.policy = UrlPolicy(settings.allowed_hosts, settings.block_private_networks)
        self.breaker = breaker or HostBreaker(
            settings.breaker_failures, settings.breaker_after_s, settings.breaker_cooldown_s
        )
        self.session = requests.Session()
        threads = max(1, settings.threads_per_task)
        adapter = _CheckedAdapter(self.policy, pool_connections=threads, pool_maxsize=threads, max_retries=0)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        self.session.headers["User-Agent"] = settings.user_agent
        # no proxies from the environment: through a proxy the socket reaches the proxy, and the
        # policy could no longer judge the address a request really goes to
        self.session.trust_env = False

    def close(self) -> None:
        self.session.close()

    def start(self, key: Any, url: str) -> Download:
        now = time.monotonic()
        return Download(key, url, host_of(url), now, now + self.settings.url_budget_s)

    def fetch(self, url: str) -> FetchResult:
        """Download ``url`` with retries, waiting in this thread between attempts; never raises."""
        download = self.start(None, url)
        while True:
            outcome = self.attempt(download)
            if isinstance(outcome, FetchResult):
                return outcome
            time.sleep(outcome)

    def _failed(self, download: Download, reason: str | None = None) -> FetchResult:
        reason = reason or download.reason or "failed"
        return FetchResult("failed", reason, download.http_status, download.attempts, None, None,
                           _ms_since(download.started))  # fmt: skip

    def attempt(self, download: Download) -> FetchResult | float:
        """One attempt at ``download``: its result, or the seconds to wait before the next attempt."""
        if not self.breaker.allow(download.host):
            return self._failed(download, "host_circuit_open")
        remaining = download.deadline - time.monotonic()
        download.attempts += 1
        try:
            content, download.http_status = self._download(download.url, remaining)
            self.breaker.record(download.host, answered=True)
            image_format = sniff_format(content)
            if not content:
                raise _Permanent("empty_body", download.http_status)
            if image_format is None:
                raise _Permanent("not_an_image", download.http_status)
            return FetchResult("ok", None, download.http_status, download.attempts, image_format, content,
                               _ms_since(download.started))  # fmt: skip
        except _Permanent as failure:
            if failure.http_status is not None:
                self.breaker.record(download.host, answered=True)
            download.reason, download.http_status = failure.reason, failure.http_status
            return self._failed(download)
        except _Transient as failure:
            self.breaker.record(download.host, answered=failure.http_status is not None)
            download.reason, download.http_status = failure.reason, failure.http_status
            if download.attempts >= max(1, self.settings.max_attempts):
                return self._failed(download)
            wait_s = self._wait_s(download.attempts, failure.wait_s)
            # another attempt only where the budget leaves it time for a reply after the wait
            if time.monotonic() + wait_s + self.settings.connect_timeout_s / 2 > download.deadline:
                return self._failed(download)
            return wait_s

    def _wait_s(self, attempts: int, retry_after_s: float | None) -> float:
        if retry_after_s is not None:
            return min(retry_after_s, self.settings.max_retry_after_s)
        backoff = self.settings.backoff_base_s * 2 ** (attempts - 1)
        return min(self.settings.backoff_max_s, backoff) * random.uniform(0.5, 1.0)

    def _download(self, url: str, budget_s: float) -> tuple[bytes, int]:
        """One attempt within ``budget_s``: follow redirects by hand, each hop checked; return body and status."""
        settings = self.settings
        budget_s = max(0.001, budget_s)
        deadline = time.monotonic() + min(settings.total_timeout_s, budget_s)
        timeout = (min(settings.connect_timeout_s, budget_s), min(settings.read_timeout_s, budget_s))
        for _hop in range(settings.max_redirects + 1):
            if time.monotonic() > deadline:  # slow hops add up: the whole download has one deadline
                raise _Permanent("too_slow")
            refusal = self.policy.check(url)
            if refusal:
                raise _Permanent(refusal)
            try:
                response = self.session.get(url, timeout=timeout, stream=True, allow_redirects=False)
            except BlockedAddress as exc:
                raise _Permanent(exc.reason) from exc
            except requests.exceptions.Timeout as exc:
                raise _Transient("timeout") from exc
            except requests.exceptions.RequestException as exc:
                raise _Transient("connection_error") from exc
            with response:
                status = response.status_code
                if status in (301, 302, 303, 307, 308) and "Location" in response.headers:
                    url = urljoin(url, response.headers["Location"])
                    continue
                if status in RETRYABLE_STATUS:
                    raise _Transient(f"http_{status}", status, _retry_after_s(response.headers.get("Retry-After")))
                if status != 200:
                    raise _Permanent(f"http_{status}", status)
                return self._read_body(response, deadline), status
        raise _Permanent("too_many_redirects")

    def _read_body(self, response: requests.Response, deadline: float) -> bytes:
        max_bytes = self.settings.max_bytes
        declared = response.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > max_bytes:
            raise _Permanent("too_large", response.status_code)
        slow_after_s, min_rate = self.settings.slow_after_s, self.settings.min_bytes_per_s
        started = time.monotonic()
        chunks, size = [], 0
        try:
            while True:
                # read1 returns whatever one socket read brings, so a slow drip meets the deadline
                chunk = response.raw.read1(65536, decode_content=True)
                if not chunk:
                    break
                size += len(chunk)
                if size > max_bytes:
                    raise _Permanent("too_large", response.status_code)
                now = time.monotonic()
                if now > deadline or (now - started > slow_after_s and size < min_rate * (now - started)):
                    raise _Permanent("too_slow", response.status_code)
                chunks.append(chunk)
        except (requests.exceptions.RequestException, urllib3.exceptions.HTTPError, OSError) as exc:
            raise _Transient("read_error", response.status_code) from exc
        return b"".join(chunks)

    def stream(self, items: Iterable[tuple[Any, str]]) -> Iterator[tuple[Any, FetchResult]]:
        """Download every (key, url) of ``items``; yield (key, result) as each one ends.

        ``fetch.threads_per_task`` attempts run at once, at most ``fetch.max_connections_per_host``
        of them on one host; a URL waiting for its next attempt is parked without a thread. At most
        four times the threads are read ahead of the input, so memory stays bounded whatever the
        partition's size: the keys read ahead, and the bodies of the attempts running.
        """
        threads = max(1, self.settings.threads_per_task)
        per_host = max(1, self.settings.max_connections_per_host)
        window = 4 * threads
        source = iter(items)
        queued: dict[str, deque[Download]] = {}  # host -> downloads ready for an attempt
        parked: list[tuple[float, int, Download]] = []  # (when the next attempt may start, tie, download)
        running: dict[Future, Download] = {}
        active: Counter[str] = Counter()
        n_open, tie, exhausted = 0, 0, False
        pool = ThreadPoolExecutor(max_workers=threads)
        try:
            while True:
                while not exhausted and n_open < window:
                    item = next(source, None)
                    if item is None:
                        exhausted = True
                        break
                    download = self.start(*item)
                    queued.setdefault(download.host, deque()).append(download)
                    n_open += 1
                now = time.monotonic()
                while parked and parked[0][0] <= now:
                    download = heapq.heappop(parked)[2]
                    queued.setdefault(download.host, deque()).appendleft(download)  # retries go first
                for host in list(queued):
                    waiting = queued[host]
                    while waiting and len(running) < threads and active[host] < per_host:
                        download = waiting.popleft()
                        running[pool.submit(self.attempt, download)] = download
                        active[host] += 1
                    if not waiting:
                        del queued[host]
                if not running:
                    if not parked:
                        if exhausted and not queued:
                            return
                        continue
                    time.sleep(max(0.0, parked[0][0] - time.monotonic()))
                    continue
                timeout = max(0.0, parked[0][0] - time.monotonic()) if parked else None
                done, _ = wait(running, timeout=timeout, return_when=FIRST_COMPLETED)
                for future in done:
                    download = running.pop(future)
                    active[download.host] -= 1
                    outcome = future.result()
                    if isinstance(outcome, FetchResult):
                        n_open -= 1
                        yield download.key, outcome
                    else:
                        tie += 1
                        heapq.heappush(parked, (time.monotonic() + outcome, tie, download))
        finally:
            pool.shutdown(wait=False, cancel_futures=True)


def _ms_since(started: float) -> int:
    return int((time.monotonic() - started) * 1000)


def result_row(product_id: str, url: str, result: FetchResult) -> tuple:
    """One FETCH_SCHEMA row."""
    return (
        product_id, url, result.status, result.reason, result.http_status, result.attempts,
        result.image_format, len(result.content or b""), result.elapsed_ms, result.content, int(time.time() * 1000),
    )  # fmt: skip


def fetch_partition(rows: Iterable[Any], settings: FetchSettings) -> Iterator[tuple]:
    """``mapPartitions`` body: (productId, image_url) rows in, FETCH_SCHEMA tuples out as they finish."""
    fetcher = Fetcher(settings)
    try:
        items = (((row["productId"], row["image_url"]), row["image_url"]) for row in rows)
        for (product_id, url), result in fetcher.stream(items):
            yield result_row(product_id, url, result)
    finally:
        fetcher.close()


def pending(products: DataFrame, already: DataFrame | None = None) -> DataFrame:
    """The (productId, image_url) rows of ``products`` with no ok result in ``already`` (FETCH_SCHEMA)."""
    todo = products.select("productId", "image_url")
    if already is not None:
        done = already.where(F.col("fetch_status") == "ok").select("productId", "image_url")
        todo = todo.join(done, ["productId", "image_url"], "left_anti")
    return todo


def fetch_images(products: DataFrame, settings: FetchSettings, already: DataFrame | None = None) -> DataFrame:
    """Download the images of ``products`` (productId, image_url) not already fetched ok.

    ``already`` is an earlier result table (FETCH_SCHEMA); its ok rows are not downloaded again.
    """
    spark = products.sparkSession
    todo = pending(products, already)
    partitions = settings.partitions or spark.sparkContext.defaultParallelism
    rdd = todo.repartition(partitions).rdd.mapPartitions(lambda rows: fetch_partition(rows, settings))
    return spark.createDataFrame(rdd, FETCH_SCHEMA)


def latest_results(table: DataFrame) -> DataFrame:
    """One row per (productId, image_url): an ok result if there is one, else the latest failure."""
    order = Window.partitionBy("productId", "image_url").orderBy(
        F.desc(F.col("fetch_status") == "ok"), F.desc("fetched_at")
    )
    return table.withColumn("_rank", F.row_number().over(order)).where("_rank = 1").drop("_rank")
