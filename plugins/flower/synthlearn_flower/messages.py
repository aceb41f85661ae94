"""What crosses between a synthlearn run and a site's node as Flower messages.

Two message types, both Flower ``query`` actions:

* ``query.hello``: no content; the node answers with its site id, image count and data
  fingerprint (JSON), so the run maps nodes to sites and checks each holds the data the
  recipe's partition gave that site.
* ``query.site_task``: a task request (``synthlearn.sitework.remote``, JSON in a
  ``ConfigRecord``) and, when the server sends one, the inbound payload; the node answers
  with the payload its site task produced. Payloads are safetensors bytes in an
  ``ArrayRecord`` (``stype`` ``safetensors``), which Flower splits into chunks and
  reassembles exactly; nothing is pickled.

A node that cannot do what was asked answers with a Flower error reply whose reason is
one line.
"""

from __future__ import annotations

import json
from typing import Any

from flwr.app import Array, ArrayRecord, ConfigRecord, Message, RecordDict

HELLO = "query.hello"
SITE_TASK = "query.site_task"
_JSON, _PAYLOAD = "synthlearn", "payload"
#: Largest JSON a message may carry (a task request is a few kilobytes).
MAX_JSON = 1_000_000


def _blob(data: bytes) -> ArrayRecord:
    return ArrayRecord({_PAYLOAD: Array(dtype="uint8", shape=(len(data),),
                                        stype="safetensors", data=data)})


def content(meta: dict[str, Any], payload: bytes | None = None) -> RecordDict:
    """A message's content: JSON ``meta`` and optionally payload bytes."""
    records = RecordDict({_JSON: ConfigRecord({"json": json.dumps(meta)})})
    if payload is not None:
        records[_PAYLOAD] = _blob(payload)
    return records


def read(message: Message) -> tuple[dict[str, Any], bytes | None]:
    """The JSON and payload bytes of a message built by ``content``; ``ValueError``
    (one line) when it is not one."""
    records = message.content
    config = records.config_records.get(_JSON)
    text = None if config is None else config.get("json")
    if not isinstance(text, str) or len(text) > MAX_JSON:
        raise ValueError("the message holds no synthlearn JSON")
    try:
        meta = json.loads(text)
    except ValueError as exc:
        raise ValueError(f"the message's JSON is malformed ({exc})") from None
    if not isinstance(meta, dict):
        raise ValueError("the message's JSON is not an object")
    arrays = records.array_records.get(_PAYLOAD)
    if arrays is None:
        return meta, None
    array = arrays.get(_PAYLOAD)
    if array is None or array.dtype != "uint8" or array.stype != "safetensors":
        raise ValueError("the message's payload is not safetensors bytes")
    return meta, bytes(array.data)
