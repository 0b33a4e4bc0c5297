"""Read an offline W&B run file (``run-<id>.wandb``) without network or a W&B server.

The file is W&B's transaction log: a 7-byte header (``:W&B``, magic, version) followed by
LevelDB-log framed records (32 KiB blocks; each chunk: crc32 u32, length u16, type u8 with
1=full, 2=first, 3=middle, 4=last), each record a ``wandb_internal_pb2.Record`` protobuf.
"""
from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any, Iterator

_HEADER, _BLOCK, _CHUNK = 7, 32768, 7


def iter_records(path: str | Path) -> Iterator[Any]:
    from wandb.proto import wandb_internal_pb2 as pb

    data = Path(path).read_bytes()
    if not data.startswith(b":W&B"):
        raise ValueError(f"{path}: not a W&B run file")
    pos, partial = _HEADER, b""
    while pos + _CHUNK <= len(data):
        left = _BLOCK - pos % _BLOCK
        if left < _CHUNK:  # block trailer padding
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + _CHUNK])
        pos += _CHUNK
        if kind == 0 and length == 0:
            break
        chunk, pos = data[pos:pos + length], pos + length
        if kind in (1, 4):
            rec = pb.Record()
            rec.ParseFromString(partial + chunk)
            partial = b""
            yield rec
        elif kind == 2:
            partial = chunk
        elif kind == 3:
            partial += chunk


def read_run(path: str | Path) -> dict[str, Any]:
    """{id, name, group, tags, project, config, summary} of one offline run file (summary: the
    run's final summary, keys with slashes kept whole, e.g. ``summary["test/acc"]``)."""
    out: dict[str, Any] = {"config": {}, "summary": {}}
    for rec in iter_records(path):
        kind = rec.WhichOneof("record_type")
        if kind == "run":
            r = rec.run
            out.update(id=r.run_id, name=r.display_name, group=r.run_group, tags=list(r.tags), project=r.project)
            for u in r.config.update:
                _set(out["config"], _path(u), json.loads(u.value_json))
        elif kind == "config":
            for u in rec.config.update:
                _set(out["config"], _path(u), json.loads(u.value_json))
        elif kind == "summary":
            for u in rec.summary.update:
                _set(out["summary"], _path(u), json.loads(u.value_json))
            for u in rec.summary.remove:
                _set(out["summary"], _path(u), None, remove=True)
    return out


def _path(item) -> list[str]:
    """An item's key path: wandb >= 0.2x writes ``key`` empty and the path in ``nested_key``, where
    ``["val/acc"]`` is one key with a slash and ``["_wandb", "runtime"]`` a nested one."""
    return [item.key] if item.key else list(item.nested_key)


def _set(tree: dict, path: list[str], value: Any, remove: bool = False) -> None:
    for key in path[:-1]:
        if not isinstance(tree.get(key), dict):
            tree[key] = {}
        tree = tree[key]
    if remove:
        tree.pop(path[-1], None)
    else:
        tree[path[-1]] = value


def find_run_files(directory: str | Path) -> list[Path]:
    return sorted(Path(directory).rglob("run-*.wandb"))
