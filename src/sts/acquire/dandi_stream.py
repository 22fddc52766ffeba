"""DANDI 000020 (patch-seq, MIES NWB 2): asset listing, and per cell only the sweeps it needs.

``list_assets`` uses the ``dandi`` client (``DandiAPIClient(api_url=...)``). ``stream_cell``
opens the asset's S3 URL through fsspec (HTTP range requests, block cache) as an h5py file,
runs the same sweep selection as ``sts select-sweeps`` on it (which reads the long-square
stimuli and then responses in amplitude order until rheobase and rheobase + 40 pA are
found), and copies just those two sweeps (stimulus, response, their attributes) and the
electrode metadata into a small local file in the MIES layout. ``sts.recordings.open_recording``
reads that file like the original. Bytes fetched are counted as the range requests return them.
"""

from __future__ import annotations

import gc
import logging
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

import h5py
import pandas as pd

from sts.acquire.http import RetryPolicy
from sts.io.atomic import atomic_h5

log = logging.getLogger(__name__)

SESSION = re.compile(r"ses-(\d+)")
ROOT_DATASETS = ("identifier", "session_description", "session_start_time", "file_create_date", "timestamps_reference_time")


def _client(api_url: str):
    os.environ.setdefault("DANDI_NO_ET", "1")  # no version check against the internet
    from dandi.dandiapi import DandiAPIClient

    return DandiAPIClient(api_url=api_url)


def list_assets(api_url: str, dandiset_id: str, version: str | None = None) -> pd.DataFrame:
    """specimen_id, asset_id, path, size for every NWB asset whose path names a session (ses-<id>)."""
    with _client(api_url) as client:
        dandiset = client.get_dandiset(dandiset_id, version)
        rows = []
        for asset in dandiset.get_assets():
            m = SESSION.search(asset.path)
            if m and asset.path.endswith(".nwb"):
                rows.append({"specimen_id": m.group(1), "asset_id": asset.identifier, "path": asset.path,
                             "size": asset.size})
        log.info("DANDI %s %s: %d NWB assets with a session id", dandiset_id, dandiset.version_id, len(rows))
    table = pd.DataFrame(rows, columns=["specimen_id", "asset_id", "path", "size"])
    return table.sort_values(["specimen_id", "path"]).reset_index(drop=True)


@dataclass
class AssetSource:
    url: str  # resolved content URL (S3), accepts range requests
    size: int
    sha256: str | None


def asset_source(api_url: str, dandiset_id: str, version: str | None, asset_id: str) -> AssetSource:
    """Where to read an asset from, with its size and SHA-256 from the asset metadata."""
    with _client(api_url) as client:
        asset = client.get_dandiset(dandiset_id, version).get_asset(asset_id)
        meta = asset.get_raw_metadata()
        url = asset.get_content_url(follow_redirects=1, strip_query=True)
    digest = (meta.get("digest") or {}).get("dandi:sha2-256")
    return AssetSource(url, int(meta.get("contentSize") or asset.size), digest)


@dataclass
class StreamResult:
    status: str  # 'ok' or 'excluded'
    reason: str
    sweep_numbers: list[int]
    bytes_fetched: int
    remote_size: int


def _sweep_series(src: h5py.File, sweep_numbers: set[int]) -> list[str]:
    """Paths of the acquisition and stimulus series of the given sweeps."""
    paths = []
    for group in ("acquisition", "stimulus/presentation"):
        for name, obj in src.get(group, {}).items():
            number = obj.attrs.get("sweep_number")
            if number is not None and int(number) in sweep_numbers:
                paths.append(f"{group}/{name}")
    return paths


def copy_sweeps(src: h5py.File, out_path: str | Path, sweep_numbers: list[int], source: str) -> None:
    """Write the given sweeps of a MIES NWB 2 file (open, possibly remote) to a small local file."""
    with atomic_h5(out_path) as dst:
        for key, value in src.attrs.items():
            dst.attrs[key] = value
        dst.attrs["sts_source"] = source
        dst.attrs["sts_sweep_numbers"] = list(sweep_numbers)
        for name in ROOT_DATASETS:
            if name in src:
                src.copy(src[name], dst, name=name)
        ephys = src.get("general/intracellular_ephys")
        if ephys is not None:  # electrodes only: the icephys tables list sweeps we do not copy
            dst.require_group("general/intracellular_ephys")
            for name, obj in ephys.items():
                if isinstance(obj, h5py.Group) and name.startswith("electrode"):
                    src.copy(obj, dst["general/intracellular_ephys"], name=name)
        for path in _sweep_series(src, set(sweep_numbers)):
            parent = dst.require_group(path.rsplit("/", 1)[0])
            src.copy(src[path], parent, name=path.rsplit("/", 1)[1])


class _Watched:
    """File-like proxy that remembers a failed read: h5py turns it into an OSError that the NWB
    reader would report as an unreadable sweep, but a network failure must be retried instead."""

    def __init__(self, fh, url: str):
        self._fh = fh
        self.url = url
        self.error: Exception | None = None

    def __repr__(self) -> str:  # h5py names the file by it in messages
        return str(self.url)

    def readinto(self, buffer) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def read(self, size: int = -1) -> bytes:
        try:
            return self._fh.read(size)
        except Exception as err:
            # Keep no traceback: its frames would hold h5py objects alive past this attempt.
            self.error = RuntimeError(f"{type(err).__name__}: {err}")
            raise

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._fh.seek(offset, whence)

    def tell(self) -> int:
        return self._fh.tell()

    def seekable(self) -> bool:
        return True

    def readable(self) -> bool:
        return True


def stream_cell(url: str, out_path: str | Path, params, block_size: int = 1 << 15,
                policy: RetryPolicy = RetryPolicy(), size: int | None = None) -> StreamResult:
    """Select the cell's two sweeps over HTTP range requests and write them to ``out_path``.

    ``params`` is the ``sts.prep.sweeps.SelectionParams`` of the downstream selection, so the
    streamed sweeps are the ones ``sts select-sweeps`` will choose. An excluded cell writes
    nothing and returns the reason. Transient HTTP failures restart the read (all bytes counted);
    a 404 raises a permanent DownloadError. ``size`` (from the asset metadata) spares the size
    probe, whose fallback after a failed HEAD is a GET of the whole file.
    """
    import fsspec

    from sts.acquire.http import DownloadError
    from sts.prep.sweeps import select_sweeps

    fetched = 0
    for attempt in range(policy.retries + 1):
        fs = fsspec.filesystem("http", skip_instance_cache=True)
        fh = None
        try:
            try:
                # Keep every fetched block: the default cache (32 blocks) evicts and fetches again.
                fh = fs.open(url, "rb", block_size=block_size, cache_type="blockcache",
                             cache_options={"maxblocks": 1 << 16}, size=size)
            except FileNotFoundError as err:
                raise DownloadError(f"HTTP 404 for {url}", 404, permanent=True) from err
            fetch = fh.cache.fetcher  # count the bytes each range request really returned

            def counted(start, end, fetch=fetch):
                nonlocal fetched
                data = fetch(start, end)
                fetched += len(data)
                return data

            fh.cache.fetcher = counted
            watched = _Watched(fh, url)
            sel = select_sweeps(watched, params)
            if watched.error is not None:
                raise watched.error
            sweeps = [int(n) for n in sel.attrs.get("sweep_numbers", [])]
            if sel.status == "ok":  # with the step below the rheobase, which shows that the file brackets it
                with h5py.File(watched, "r") as src:
                    copy_sweeps(src, out_path, sorted({*sweeps, int(sel.attrs["bracket_sweep"])}), url)
                if watched.error is not None:
                    raise watched.error
            return StreamResult(sel.status, sel.reason, sweeps, fetched, int(fh.size))
        except DownloadError:
            raise
        except Exception as err:  # fsspec/aiohttp raise many types for network failures
            # h5py objects of the failed attempt must be closed here, in this thread, before the
            # HTTP file under them: a later garbage collection elsewhere deadlocks or crashes.
            message = f"{type(err).__name__}: {err}"
            err = watched = None
            gc.collect()
            if attempt == policy.retries:
                raise DownloadError(f"streaming {url} failed: {message}")
            log.warning("streaming %s failed (%s), retry %d", url, message, attempt + 1)
            time.sleep(policy.backoff_s * 2**attempt)
        finally:
            if fh is not None:
                fh.close()
    raise AssertionError("unreachable")
