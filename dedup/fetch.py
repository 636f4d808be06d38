"""Fetch: download each product's image inside ``mapPartitions``, one pooled session per task.

Every row comes out with ``fetch_status`` ok or failed and a reason. Transient failures (5xx,
429 with Retry-After, connection errors, read time-outs) are retried with exponential backoff
and jitter, a bounded number of times. A body is kept only when its leading bytes are an image
and it fits in ``fetch.max_bytes``; a slow drip is cut at ``fetch.total_timeout_s``. Only http
and https; redirects are followed by hand so that each hop passes the URL policy too, and every
connection is checked at the address it reached (see :class:`UrlPolicy`).

Results are appended to a Parquet table (``images/``) in batches of ``fetch.batch_rows``, each its
own commit, so a crash keeps what finished. Running again into the same output only downloads
rows that have no ok result there yet.
"""

from __future__ import annotations

import ipaddress
import random
import socket
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
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


class Fetcher:
    """Downloads images over one pooled ``requests.Session`` (shared by a task's threads)."""

    def __init__(self, settings: dict[str, Any]) -> None:
        self.settings = settings
        self.policy = UrlPolicy(settings["allowed_hosts"], settings["block_private_networks"])
        self.session = requests.Session()
        threads = max(1, int(settings["threads_per_task"]))
        adapter = _CheckedAdapter(self.policy, pool_connections=threads, pool_maxsize=threads, max_retries=0)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        self.session.headers["User-Agent"] = settings["user_agent"]
        # no proxies from the environment: through a proxy the socket reaches the proxy, and the
        # policy could no longer judge the address a request really goes to
        self.session.trust_env = False

    def close(self) -> None:
        self.session.close()

    def fetch(self, url: str) -> FetchResult:
        """Download ``url`` with retries; never raises."""
        started = time.monotonic()
        attempts, http_status = 0, None
        max_attempts = max(1, int(self.settings["max_attempts"]))
        while True:
            attempts += 1
            try:
                content, http_status = self._download(url)
                image_format = sniff_format(content)
                if not content:
                    raise _Permanent("empty_body", http_status)
                if image_format is None:
                    raise _Permanent("not_an_image", http_status)
                return FetchResult("ok", None, http_status, attempts, image_format, content, _ms_since(started))
            except _Permanent as failure:
                return FetchResult(
                    "failed", failure.reason, failure.http_status, attempts, None, None, _ms_since(started)
                )
            except _Transient as failure:
                if attempts >= max_attempts:
                    return FetchResult(
                        "failed", failure.reason, failure.http_status, attempts, None, None, _ms_since(started)
                    )
                time.sleep(self._wait_s(attempts, failure.wait_s))

    def _wait_s(self, attempts: int, retry_after_s: float | None) -> float:
        if retry_after_s is not None:
            return min(retry_after_s, float(self.settings["max_retry_after_s"]))
        backoff = float(self.settings["backoff_base_s"]) * 2 ** (attempts - 1)
        return min(float(self.settings["backoff_max_s"]), backoff) * random.uniform(0.5, 1.0)

    def _download(self, url: str) -> tuple[bytes, int]:
        """One attempt: follow redirects by hand, each hop checked; return body and status."""
        settings = self.settings
        deadline = time.monotonic() + float(settings["total_timeout_s"])
        timeout = (float(settings["connect_timeout_s"]), float(settings["read_timeout_s"]))
        for _hop in range(int(settings["max_redirects"]) + 1):
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
        max_bytes = int(self.settings["max_bytes"])
        declared = response.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > max_bytes:
            raise _Permanent("too_large", response.status_code)
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
                if time.monotonic() > deadline:
                    raise _Permanent("too_slow", response.status_code)
                chunks.append(chunk)
        except (requests.exceptions.RequestException, urllib3.exceptions.HTTPError, OSError) as exc:
            raise _Transient("read_error", response.status_code) from exc
        return b"".join(chunks)


def _ms_since(started: float) -> int:
    return int((time.monotonic() - started) * 1000)


def fetch_partition(rows: Iterator[Any], settings: dict[str, Any]) -> Iterator[tuple]:
    """``mapPartitions`` body: (productId, image_url) rows in, FETCH_SCHEMA tuples out."""
    fetcher = Fetcher(settings)
    threads = max(1, int(settings["threads_per_task"]))
    window = threads * 4  # bounded: at most this many bodies wait in memory

    def one(row: Any) -> tuple:
        result = fetcher.fetch(row["image_url"])
        return (
            row["productId"], row["image_url"], result.status, result.reason, result.http_status,
            result.attempts, result.image_format, len(result.content or b""), result.elapsed_ms,
            result.content, int(time.time() * 1000),
        )  # fmt: skip

    try:
        with ThreadPoolExecutor(max_workers=threads) as pool:
            batch: list[Any] = []
            for row in rows:
                batch.append(row)
                if len(batch) >= window:
                    yield from pool.map(one, batch)
                    batch = []
            yield from pool.map(one, batch)
    finally:
        fetcher.close()


def pending(products: DataFrame, already: DataFrame | None = None) -> DataFrame:
    """The (productId, image_url) rows of ``products`` with no ok result in ``already`` (FETCH_SCHEMA)."""
    todo = products.select("productId", "image_url")
    if already is not None:
        done = already.where(F.col("fetch_status") == "ok").select("productId", "image_url")
        todo = todo.join(done, ["productId", "image_url"], "left_anti")
    return todo


def fetch_images(products: DataFrame, settings: dict[str, Any], already: DataFrame | None = None) -> DataFrame:
    """Download the images of ``products`` (productId, image_url) not already fetched ok.

    ``already`` is an earlier result table (FETCH_SCHEMA); its ok rows are not downloaded again.
    """
    spark = products.sparkSession
    todo = pending(products, already)
    partitions = int(settings["partitions"]) or 4 * spark.sparkContext.defaultParallelism
    rdd = todo.repartition(partitions).rdd.mapPartitions(lambda rows: fetch_partition(rows, settings))
    return spark.createDataFrame(rdd, FETCH_SCHEMA)


def fetch_in_batches(
    products: DataFrame, settings: dict[str, Any], images_path: str, scratch_path: str, already: DataFrame | None
) -> int:
    """Download what :func:`pending` leaves and append it to ``images_path`` in batches of about
    ``fetch.batch_rows`` rows, one Spark write (one commit) per batch; return the number of batches.

    A crash (a killed driver, a lost cluster) keeps every batch committed before it, and the next
    run into the same output fetches only the rest. The pending keys are written to
    ``scratch_path`` first, so the batches are fixed before anything is appended.
    """
    spark = products.sparkSession
    pending(products, already).write.mode("overwrite").parquet(scratch_path)
    todo = spark.read.parquet(scratch_path)
    n_batches = max(1, -(-todo.count() // max(1, int(settings["batch_rows"]))))
    batch = F.pmod(F.xxhash64("productId", "image_url"), F.lit(n_batches))
    for index in range(n_batches):
        fetch_images(todo.where(batch == index), settings).write.mode("append").parquet(images_path)
    return n_batches


def latest_results(table: DataFrame) -> DataFrame:
    """One row per (productId, image_url): an ok result if there is one, else the latest failure."""
    order = Window.partitionBy("productId", "image_url").orderBy(
        F.desc(F.col("fetch_status") == "ok"), F.desc("fetched_at")
    )
    return table.withColumn("_rank", F.row_number().over(order)).where("_rank = 1").drop("_rank")
