"""Read TensorBoard event files without TensorFlow (TFRecord framing + tensorboardX's protos)."""

from __future__ import annotations

import struct
from collections import defaultdict
from pathlib import Path


def read_scalars(path: Path) -> dict[str, list[tuple[int, float]]]:
    """{tag: [(step, value), ...]} of every scalar summary in one events file."""
    from tensorboardX.proto.event_pb2 import Event

    scalars: dict[str, list[tuple[int, float]]] = defaultdict(list)
    data = Path(path).read_bytes()
    offset = 0
    while offset + 12 <= len(data):
        (length,) = struct.unpack_from("<Q", data, offset)
        record = data[offset + 12: offset + 12 + length]  # skip length and its crc
        offset += 12 + length + 4  # ... and the data's crc
        event = Event.FromString(record)
        for value in event.summary.value:
            if value.HasField("simple_value"):
                scalars[value.tag].append((event.step, value.simple_value))
    return dict(scalars)
