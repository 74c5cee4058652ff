"""Write an object's one outcome so that it reflects the input's LATEST version, whatever the races.

Several workers may handle deliveries of one key at once (two uploads in quick
succession, redeliveries, several concurrent pollers). Each outcome document carries
the version it was made from in its object metadata (``x-amz-meta-medserve-source``:
the input's version id, or its ETag in an unversioned bucket), and every write or
delete of an outcome is conditional:

1. the input is HEADed: a delivery that is no longer of the latest version writes
   nothing (``superseded``; the newer version's delivery writes its outcome);
2. the document is put only over the version of it that was just seen (``If-Match``),
   or only where there is none (``If-None-Match: *``); a lost race starts again at 1;
3. the outcome of the other kind (result vs error) is deleted only if it is still the
   version that was seen (``If-Match``) and was not made from a newer input version;
   when it was, this delivery is stale: it removes its own document (``If-Match``) and
   stops;
4. the input is HEADed again: if a newer version appeared meanwhile, this delivery
   removes its own document (``If-Match``: never a newer one) and leaves the outcome to
   that version's delivery.

No step deletes or overwrites a document made from a newer version, and the delivery of
the latest version always ends with its document in place and the other kind gone.
An input deleted after it was read keeps the outcome of what was read.
"""

from __future__ import annotations

from typing import Any

from medserve.batch import storage

SOURCE_META = "medserve-source"
"""User-metadata key (``x-amz-meta-medserve-source``) naming the input version an outcome was made from."""
MAX_ATTEMPTS = 8


def source_marker(source: dict[str, Any]) -> str | None:
    """The input version an outcome is made from: its version id, else its ETag (``None`` when unknown)."""
    return source.get("version_id") or source.get("etag") or None


def _is_latest(bucket: str, key: str, marker: str) -> bool:
    try:
        meta = storage.head(bucket, key)
    except storage.ObjectGone:
        return True  # deleted after it was read: what was read is the last version there was
    version = meta.get("version_id")
    latest = version if version not in (None, "null") else meta.get("etag")
    return latest == marker


def write(
    source: dict[str, Any],
    out_bucket: str,
    own_key: str,
    other_key: str,
    document: dict[str, Any],
    *,
    content_type: str,
) -> bool:
    """Write ``document`` at ``own_key`` and remove ``other_key`` (see the module notes).

    Parameters
    ----------
    source
        ``{"bucket", "key", "etag", "version_id"?}`` of the input as it was read.

    Returns
    -------
    bool
        ``True`` when this is the outcome of the latest version; ``False`` when the
        delivery was superseded by a newer version (nothing of it is left).

    Raises
    ------
    storage.WriteConflict
        Every attempt lost a race (the message is retried).
    """
    marker = source_marker(source)
    if marker is None:  # nothing was read (misplaced key, unknown model, gone): key-derived outcome
        storage.put_json(out_bucket, own_key, document, content_type=content_type)
        storage.delete_if_present(out_bucket, other_key)
        return True
    bucket, key = str(source["bucket"]), str(source["key"])
    for _ in range(MAX_ATTEMPTS):
        if not _is_latest(bucket, key, marker):
            return False
        own = storage.head_metadata(out_bucket, own_key)
        try:
            etag = storage.put_json_if(
                out_bucket,
                own_key,
                document,
                content_type=content_type,
                metadata={SOURCE_META: marker},
                if_match=own[0] if own else None,
            )
        except storage.WriteConflict:
            continue
        other = storage.head_metadata(out_bucket, other_key)
        if other is not None:
            other_etag, other_meta = other
            if other_meta.get(SOURCE_META) != marker and not _is_latest(bucket, key, marker):
                storage.delete_if_match(out_bucket, own_key, etag)
                return False
            if not storage.delete_if_match(out_bucket, other_key, other_etag) and storage.exists(out_bucket, other_key):
                continue  # rewritten meanwhile: look again
        if not _is_latest(bucket, key, marker):
            storage.delete_if_match(out_bucket, own_key, etag)
            return False
        return True
    raise storage.WriteConflict("the outcome kept changing; retry the message")
