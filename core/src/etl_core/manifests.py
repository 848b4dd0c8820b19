"""Run manifests of file-like targets (DESIGN §4), over any ``pyarrow.fs.FileSystem``.

A sink stages a run's files under ``<root>/_etl/tmp/<run_key>/`` and publishes them by moving
them into place and then writing ``<root>/_etl/manifests/<run_key>.json`` — the run's ledger
entry and the moment readers that honour manifests see the new files. Readers read the union
of the manifests' files, less:

- the manifests another one ``replaces`` (an overwrite of the whole target), and
- the files another one ``removes`` (``{run_key: [file, ...]}``: an overwrite of the
  partitions the run wrote).

Files already in a target before its first manifest are listed in ``adopted.json`` first, so
that readers keep seeing them and an overwrite can replace them. Paths in manifests are
relative to ``root``. Names starting with ``_`` or ``.`` are never data.

The local ``files`` sink and the ``s3`` plugin share this module; both use it with a
``pyarrow.fs`` filesystem (``LocalFileSystem``, ``S3FileSystem``) and a base path in that
filesystem's form (``/data/out``, ``bucket/prefix``).
"""

from __future__ import annotations

import datetime as dt
import json
import posixpath
import uuid
from collections.abc import Collection, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pyarrow.fs as pafs

    from etl_core.api import Context

__all__ = [
    "MANIFESTS",
    "STAGING",
    "data_files",
    "finish_replacements",
    "has_manifest",
    "incremental_problems",
    "live_files",
    "manifest_files",
    "modified_since",
    "publish_run",
    "read_manifests",
    "run_record",
    "staging_path",
]

MANIFESTS = "_etl/manifests"
STAGING = "_etl/tmp"
#: how a publish treats what the target held: keep it, replace all of it, or replace the
#: files in the partition folders the run wrote
REPLACE = ("none", "all", "partitions")


def _join(root: str, relative: str) -> str:
    return f"{root.rstrip('/')}/{relative}" if root else relative


def hidden(relative: str) -> bool:
    return any(part.startswith(("_", ".")) for part in relative.split("/"))


def staging_path(root: str, run_key: str, index: int | str | None = None) -> str:
    """``<root>/_etl/tmp/<run_key>[/<index>]``."""
    path = _join(root, f"{STAGING}/{run_key}")
    return path if index is None else f"{path}/{index}"


def data_files(fs: pafs.FileSystem, root: str) -> dict[str, pafs.FileInfo]:
    """The visible data files under ``root`` (relative path → info), or nothing when absent."""
    import pyarrow.fs as pafs

    selector = pafs.FileSelector(root.rstrip("/"), recursive=True, allow_not_found=True)
    prefix = root.rstrip("/") + "/"
    found = {}
    for info in fs.get_file_info(selector):
        if info.type != pafs.FileType.File:
            continue
        relative = info.path[len(prefix) :] if info.path.startswith(prefix) else info.base_name
        if not hidden(relative):
            found[relative] = info
    return found


def read_manifests(fs: pafs.FileSystem, root: str) -> dict[str, dict[str, Any]] | None:
    """Every manifest by key (``run_key`` or ``adopted``), or ``None`` when there are none."""
    import pyarrow.fs as pafs

    folder = _join(root, MANIFESTS)
    selector = pafs.FileSelector(folder, recursive=False, allow_not_found=True)
    infos = [
        i
        for i in fs.get_file_info(selector)
        if i.type == pafs.FileType.File and i.base_name.endswith(".json")
    ]
    if not infos:
        return None
    manifests = {}
    for info in sorted(infos, key=lambda i: i.path):
        with fs.open_input_stream(info.path) as stream:
            manifests[info.base_name[: -len(".json")]] = json.loads(stream.read())
    return manifests


def live_files(manifests: Mapping[str, Mapping[str, Any]]) -> dict[str, list[str]]:
    """Each manifest's files that readers see: replaced manifests and removed files left out."""
    replaced = {key for body in manifests.values() for key in body.get("replaces", ())}
    removed: dict[str, set[str]] = {}
    for body in manifests.values():
        for key, files in body.get("removes", {}).items():
            removed.setdefault(key, set()).update(files)
    return {
        key: [f for f in body["files"] if f not in removed.get(key, ())]
        for key, body in manifests.items()
        if key not in replaced
    }


def manifest_files(fs: pafs.FileSystem, root: str) -> list[str] | None:
    """The files readers that honour manifests read (relative to ``root``), or ``None`` when
    ``root`` has no manifests (read every visible file then)."""
    manifests = read_manifests(fs, root)
    if manifests is None:
        return None
    return [f for files in live_files(manifests).values() for f in files]


def has_manifest(fs: pafs.FileSystem, root: str, run_key: str) -> bool:
    import pyarrow.fs as pafs

    info = fs.get_file_info(_join(root, f"{MANIFESTS}/{run_key}.json"))
    return bool(info.type == pafs.FileType.File)


def _write_json(fs: pafs.FileSystem, path: str, body: Mapping[str, Any]) -> None:
    """Write then move into place: a reader never sees half a manifest (an S3 PUT is atomic
    by itself; the move keeps local files so too)."""
    _ensure_parent(fs, path)
    tmp = f"{path}.tmp"
    with fs.open_output_stream(tmp) as stream:
        stream.write(json.dumps(body, indent=1).encode())
    fs.move(tmp, path)


def _ensure_parent(fs: pafs.FileSystem, path: str) -> None:
    if fs.type_name == "local":  # object stores have no folders to create
        fs.create_dir(posixpath.dirname(path), recursive=True)


def adopt_existing(fs: pafs.FileSystem, root: str) -> None:
    """Before the first manifest, list the files already there in one of their own."""
    if read_manifests(fs, root) is not None:
        return
    existing = sorted(data_files(fs, root))
    if existing:
        body = {"run_id": None, "adopted": True, "files": existing, "replaces": []}
        _write_json(fs, _join(root, f"{MANIFESTS}/adopted.json"), body)


def run_record(ctx: Context, fmt: str) -> dict[str, Any]:
    """What a manifest says of the run that wrote it (``publish_run`` adds the files)."""
    return {
        "pipeline": ctx.pipeline,
        "run_id": ctx.run_id,
        "sink": ctx.dataset,
        "mode": ctx.mode,
        "format": fmt,
    }


def incremental_problems(incremental: Mapping[str, Any] | None, kind: str) -> list[str]:
    """A file-like source reads incrementally by modification time only: the problem with
    any other ``incremental:`` block, for an extractor's ``check``."""
    if incremental is None or dict(incremental) == {"by": "modified_time"}:
        return []
    return [
        f"`incremental: {dict(incremental)}`: {kind} sources read incrementally by "
        "modification time only; write `incremental: {by: modified_time}`"
    ]


def modified_since(
    files: Mapping[str, float], bookmark: Any
) -> tuple[list[str], dict[str, Any] | None]:
    """For a file-like source read ``incremental: {by: modified_time}``: the names of ``files``
    (name → modification time, in seconds) that are new since ``bookmark``, in their order, and
    the bookmark to propose (``None`` when nothing is new).

    A bookmark is ``{"mtime": newest, "names": [the names with that time]}``, so a file written
    in the same clock tick as the newest one read but listed only later (S3's times have
    one-second resolution) is still read next time, and none is read twice. A bare number (the
    form before) is a time, and only later files are new."""
    if bookmark is None:
        new = list(files)
    elif isinstance(bookmark, Mapping):
        mark, seen = float(bookmark["mtime"]), set(bookmark.get("names", ()))
        new = [n for n, t in files.items() if t > mark or (t == mark and n not in seen)]
    else:
        new = [n for n, t in files.items() if t > float(bookmark)]
    if not new:
        return [], None
    newest = max(files[n] for n in new)
    return new, {"mtime": newest, "names": sorted(n for n, t in files.items() if t == newest)}


def publish_run(
    fs: pafs.FileSystem,
    root: str,
    staging: str,
    run_key: str,
    record: Mapping[str, Any],
    replace: str = "none",
    only: Collection[str] | None = None,
) -> list[str] | None:
    """Move the staged files under ``staging`` into ``root``, then write the run's manifest
    (``record`` plus the files, ``replaces``/``removes`` and ``published_at``); then delete
    what it replaced. Returns the published files, or ``None`` when this run had already
    published here (the manifest is the ledger entry: publishing twice is a no-op).
    ``only``: the staged files to publish (those a writer's commit recorded), else all.

    A file whose name is taken gets a random prefix. If anything fails before the manifest
    is written, the moved files go back to the staging: the target is as it was.
    """
    if replace not in REPLACE:
        raise ValueError(f"replace must be one of {', '.join(REPLACE)}, not {replace!r}")
    if has_manifest(fs, root, run_key):
        return None
    adopt_existing(fs, root)
    manifests = read_manifests(fs, root) or {}
    staged = sorted(set(data_files(fs, staging)) if only is None else only)
    taken = set(data_files(fs, root))
    moves: list[tuple[str, str]] = []
    try:
        for relative in staged:
            destination = relative
            if destination in taken:
                folder, name = posixpath.split(relative)
                destination = posixpath.join(folder, f"{uuid.uuid4().hex[:8]}-{name}")
            source, target = _join(staging, relative), _join(root, destination)
            _ensure_parent(fs, target)
            fs.move(source, target)
            moves.append((source, target))
            taken.add(destination)
        files = [target[len(root.rstrip("/")) + 1 :] for _, target in moves]
        body = {
            **record,
            "published_at": dt.datetime.now(dt.UTC).isoformat(),
            "files": files,
            "replaces": sorted(manifests) if replace == "all" else [],
        }
        if replace == "partitions":
            body["removes"] = _in_folders(live_files(manifests), files)
        _write_json(fs, _join(root, f"{MANIFESTS}/{run_key}.json"), body)
    except BaseException:
        for source, target in reversed(moves):  # take the new files out again
            fs.move(target, source)
        raise
    finish_replacements(fs, root)
    return files


def _in_folders(live: Mapping[str, Sequence[str]], written: Sequence[str]) -> dict[str, list]:
    folders = {posixpath.dirname(f) for f in written}
    removes = {
        key: [f for f in files if posixpath.dirname(f) in folders] for key, files in live.items()
    }
    return {key: files for key, files in removes.items() if files}


def finish_replacements(fs: pafs.FileSystem, root: str) -> None:
    """Delete the files and manifests that published overwrites replaced or removed
    (idempotent: also finishes the work of a publish that died after its manifest)."""
    manifests = read_manifests(fs, root)
    if manifests is None:
        return
    replaced = {key for body in manifests.values() for key in body.get("replaces", ())}
    doomed = {f for key in replaced & set(manifests) for f in manifests[key]["files"]}
    doomed |= {
        f
        for body in manifests.values()
        for files in body.get("removes", {}).values()
        for f in files
    }
    # a name freed by a deletion may be taken again by a later run: never delete a live file
    doomed -= {f for files in live_files(manifests).values() for f in files}
    for relative in _existing(fs, root, sorted(doomed)):
        fs.delete_file(_join(root, relative))
    for key in sorted(replaced & set(manifests)):
        fs.delete_file(_join(root, f"{MANIFESTS}/{key}.json"))


def _existing(fs: pafs.FileSystem, root: str, relatives: Sequence[str]) -> Iterator[str]:
    import pyarrow.fs as pafs

    if not relatives:
        return
    infos = fs.get_file_info([_join(root, r) for r in relatives])
    for relative, info in zip(relatives, infos, strict=True):
        if info.type == pafs.FileType.File:
            yield relative
