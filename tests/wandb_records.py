"""Read offline W&B run files back: the records wandb would sync later."""

from __future__ import annotations

import struct
import time
from pathlib import Path


def read_records(path: Path) -> list:
    """Records of a ``.wandb`` run file: a 7-byte header, then 32 KiB blocks of
    (crc32, length, type) framed chunks (the LevelDB log format), each record a protobuf."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a W&B run file"
    pos, block, chunks, pending = 7, 32 * 1024, [], b""
    while pos + 7 <= len(data):
        room = block - pos % block
        if room < 7:  # block trailer
            pos += room
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        if kind == 0:
            break
        chunk, pos = data[pos + 7 : pos + 7 + length], pos + 7 + length
        if kind == 1:  # full
            chunks.append(chunk)
        elif kind == 2:  # first
            pending = chunk
        elif kind == 3:  # middle
            pending += chunk
        elif kind == 4:  # last
            chunks.append(pending + chunk)
            pending = b""
    records = []
    for raw in chunks:
        record = wandb_internal_pb2.Record()
        record.ParseFromString(raw)
        records.append(record)
    return records


def summarize_run(path: Path, wait_s: float = 15.0) -> dict:
    """The run's name, job type, group and logged keys. The W&B service writes the file from its own
    process: on a busy machine its last buffered block can land a moment after ``finish()`` returned,
    so a file without its run record yet is read again (up to ``wait_s``)."""
    deadline = time.monotonic() + wait_s
    while True:
        out = _summary(path)
        if out["job_type"] is not None or time.monotonic() > deadline:
            return out
        time.sleep(0.2)


def _summary(path: Path) -> dict:
    out = {"name": None, "job_type": None, "group": None, "keys": set()}
    for record in read_records(path):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            out.update(name=record.run.display_name, job_type=record.run.job_type, group=record.run.run_group)
        elif kind == "history":
            out["keys"] |= {item.key or "/".join(item.nested_key) for item in record.history.item}
        elif kind == "summary":
            out["keys"] |= {item.key or "/".join(item.nested_key) for item in record.summary.update}
    return out
