"""Uploads are written once: a spooled weights part becomes the stored weight file.

A local store gets the spool file by a hard link (same file system) or a copy
the kernel makes (another one), with a normal file's mode; the stored bundle
loads back with the uploaded values and no spool file is left.
"""

from __future__ import annotations

import os
import stat

import pytest
from serverkit import (
    assert_same_weights,
    make_artifacts,
    multipart_body,
    server_factory,
    tfjs_parts,
)

import tfjsfs
from tfjsfs.server import modelstore, spools
from tfjsfs.server.upload import read_upload_bytes


@pytest.fixture
def model_server(tmp_path):
    yield from server_factory(tmp_path)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_a_spooled_upload_is_linked_into_a_local_store(model_server, tmp_path, monkeypatch):
    placed = []

    def spy(spool: str, path: str, *args) -> str:
        inode = os.stat(spool).st_ino
        how = spools.place_spool(spool, path, *args)
        placed.append((how, inode, os.stat(path).st_ino, path))
        return how

    monkeypatch.setattr(modelstore, "place_spool", spy, raising=False)
    spool = tmp_path / "spool"
    spool.mkdir()
    server = model_server(spool_memory=1024, spool_dir=str(spool))
    artifacts = make_artifacts(31, extra=300_000)  # 1.2 MB: spooled to a file
    tfjsfs.save_model(artifacts, server.model_url("m"))
    ((how, spool_inode, stored_inode, path),) = placed
    assert how == "link" and stored_inode == spool_inode  # the bytes were not written again
    with open(path, "rb") as f:
        assert f.read() == bytes(memoryview(artifacts.weight_data).cast("B"))
    st = os.stat(path)
    assert stat.S_IMODE(st.st_mode) == 0o666 & ~_umask()  # not the spool's private 0600
    assert st.st_nlink == 1 and list(spool.iterdir()) == []  # the spool's name is gone
    url = server.model_url("m").replace("http://", "tfjs+http://")
    assert_same_weights(tfjsfs.load_weights(url), artifacts.weights)


@pytest.mark.skipif(not os.path.isdir("/dev/shm"), reason="no /dev/shm")
def test_a_spool_on_another_file_system_is_copied(tmp_path):
    data = os.urandom(3 * 1024 * 1024 + 7)
    spool = f"/dev/shm/{spools.spool_prefix()}test{os.urandom(4).hex()}{spools.SPOOL_SUFFIX}"
    with open(spool, "wb") as f:
        f.write(data)
    os.chmod(spool, 0o600)
    try:
        if os.stat(spool).st_dev == os.stat(tmp_path).st_dev:
            pytest.skip("/dev/shm is on the same file system here")
        target = tmp_path / "weights.bin"
        assert spools.place_spool(spool, str(target)) == "copy"
        assert target.read_bytes() == data and os.path.exists(spool)
        assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~_umask()
    finally:
        os.unlink(spool)


async def test_read_upload_bytes_takes_a_body_larger_than_the_stream_limit(tmp_path):
    """A body above 128 KiB tripped aiohttp's pause of a stream with no transport."""
    artifacts = make_artifacts(32, extra=200_000)  # 800 kB of weights
    ctype, body = multipart_body(tfjs_parts(artifacts))
    with await read_upload_bytes(ctype, body, spool_memory=1024, spool_dir=str(tmp_path)) as up:
        assert up.weight_bytes == len(memoryview(artifacts.weight_data).cast("B"))
        assert bytes(up.spool.view()) == bytes(memoryview(artifacts.weight_data).cast("B"))
