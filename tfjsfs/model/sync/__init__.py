"""Incremental, torn-free sync of every bundle under one prefix to another.

The engine behind ``tfjsfs sync`` and :func:`sync_models`.

**Diff from metadata.** One recursive listing of each tree gives every file's
size and the store's own identity for it (S3 ETag, GCS md5Hash, local
modification time: :func:`tfjsfs._util.entries.entity_tag`). Each synced
model.json records, in ``userDefinedMetadata["tfjsfs:sync"]``, the identity of
the source model.json and of every source shard it was made from. So a model
whose source files still carry the recorded identities, and whose destination
shards are all listed at their recorded sizes, is *unchanged* after one small
read (the destination model.json) and no shard request at all.

**Shard-level transfer.** A new or changed model sends only the shards whose
source identity differs from what the destination recorded (or, with
``checksum=True``, whose bytes differ). A sent shard gets a name derived from
its source identity (``group1-shard1of2.<tag>.bin``), so a name never holds two
different contents: a reader holding the previous model.json keeps reading its
own shards, and after an interruption a second run finds what already
arrived by name and size and does not send it again. The destination
model.json is published last and atomically (:func:`tfjsfs.io.writer.publish`),
then the shards only the previous version used are deleted.

**Deletion.** With ``delete=True``, destination models absent from the source
are removed model.json first (:func:`tfjsfs.model.removal.remove_model`).

The package, one concern per module: :mod:`.names` (model and shard names),
:mod:`.state` (a run's options and plans), :mod:`.record` (the sync record and
the published model.json), :mod:`.planning` (the diff), :mod:`.transfer`
(sending, publishing, sweeping), :mod:`.job` (one run) and :mod:`.report`.
"""

from .job import DEFAULT_MODEL_CONCURRENCY, sync_models, sync_models_async
from .names import model_name, tagged_name
from .record import SYNC_KEY
from .report import CHANGED, DELETED, ERROR, NEW, UNCHANGED, ModelSync, SyncReport

__all__ = [
    "CHANGED",
    "DEFAULT_MODEL_CONCURRENCY",
    "DELETED",
    "ERROR",
    "NEW",
    "SYNC_KEY",
    "UNCHANGED",
    "ModelSync",
    "SyncReport",
    "model_name",
    "sync_models",
    "sync_models_async",
    "tagged_name",
]
