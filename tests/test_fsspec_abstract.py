"""fsspec's own abstract suite on tfjs+memory, tfjs+file and tfjs+s3: plain files
pass through untouched (copy, get, put, pipe, open, create-only writes).

Memory and local run every test. Each S3 test costs seconds against moto (plain
s3fs is no faster there), so by default S3 runs the pipe and open tests and a
sample of the copy/get/put ones; ``TFJSFS_FULL_ABSTRACT=1`` runs all of them.
"""

from __future__ import annotations

import os
import posixpath
import uuid

import fsspec
import pytest
from fsspec.tests import abstract

from tfjsfs.fs.core import TFJSFileSystem

ABSTRACT = (
    abstract.AbstractCopyTests,
    abstract.AbstractGetTests,
    abstract.AbstractPutTests,
    abstract.AbstractPipeTests,
    abstract.AbstractOpenTests,
)


class MemoryFixtures(abstract.AbstractFixtures):
    @pytest.fixture(scope="class")
    @classmethod
    def fs(cls):
        fs = fsspec.filesystem("tfjs+memory", skip_instance_cache=True)
        assert isinstance(fs, TFJSFileSystem)
        return fs

    @pytest.fixture
    def fs_join(self):
        return lambda *parts: "/".join(parts)

    @pytest.fixture
    def fs_path(self, fs):
        root = f"/tfjsfs-abstract-{uuid.uuid4().hex[:8]}"
        yield root
        if fs.exists(root):
            fs.rm(root, recursive=True)


class LocalFixtures(abstract.AbstractFixtures):
    @pytest.fixture(scope="class")
    @classmethod
    def fs(cls):
        return fsspec.filesystem("tfjs+file", auto_mkdir=True, skip_instance_cache=True)

    @pytest.fixture
    def fs_path(self, tmpdir):
        return str(tmpdir)


class S3Fixtures(abstract.AbstractFixtures):
    @pytest.fixture(scope="class")
    @classmethod
    def fs(cls, s3_server):
        return fsspec.filesystem("tfjs+s3", skip_instance_cache=True, **s3_server.storage_options)

    @pytest.fixture(scope="class")
    @classmethod
    def _bucket(cls, s3_server):
        bucket = s3_server.new_bucket("tfjsfs-abstract")
        yield bucket
        s3_server.remove_bucket(bucket)

    @pytest.fixture
    def fs_join(self):
        return lambda *parts: posixpath.join(*parts)

    @pytest.fixture
    def fs_path(self, fs, _bucket):
        root = f"{_bucket}/{uuid.uuid4().hex[:8]}"
        yield root
        fs.invalidate_cache()

    @pytest.fixture
    def supports_empty_directories(self):
        return False


S3_SAMPLE = {
    "test_copy_directory_to_new_directory",
    "test_copy_glob_to_existing_directory",
    "test_get_directory_to_existing_directory",
    "test_get_list_of_files_to_new_directory",
    "test_put_file_to_existing_directory",
    "test_put_glob_to_new_directory",
    "test_pipe_exclusive",
    "test_open_exclusive",
}


def _classes(fixtures: type, label: str, keep: set[str] | None = None) -> dict[str, type]:
    """One test class per abstract class; tests outside *keep* are dropped."""
    out = {}
    for base in ABSTRACT:
        name = f"Test{label}{base.__name__.replace('Abstract', '')}"
        body = {}
        if keep is not None:
            body = {t: None for t in dir(base) if t.startswith("test_") and t not in keep}
        out[name] = type(name, (base, fixtures), body)
    return out


globals().update(_classes(MemoryFixtures, "TfjsMemory"))
globals().update(_classes(LocalFixtures, "TfjsFile"))
globals().update(
    _classes(S3Fixtures, "TfjsS3", None if os.environ.get("TFJSFS_FULL_ABSTRACT") else S3_SAMPLE)
)


# s3fs refuses "xb" when the file is committed, not when it is opened (plain s3fs
# behaves the same; s3fs's own derived suite marks this test xfail as well)
@pytest.mark.xfail(reason="s3fs checks create-only writes at commit, not at open", strict=True)
def _s3_open_exclusive(self, fs, fs_target):
    abstract.AbstractOpenTests.test_open_exclusive(self, fs, fs_target)


TestTfjsS3OpenTests.test_open_exclusive = _s3_open_exclusive  # noqa: F821
