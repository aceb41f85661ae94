"""The server's side of a deployment: ``data: {use: exported, params: {dir: DIR}}``
reads the held-out splits and the sites' manifest that ``synthlearn sites export``
wrote into DIR, and no site's images (the sites stay at their nodes)."""

from __future__ import annotations

import attrs

from synthlearn.data.types import Dataset
from synthlearn.params import input_path_field


@attrs.define(frozen=True)
class ExportedConfig:
    """The folder an export wrote; the server needs only its ``sites.json`` and
    ``server.safetensors``, not the site files. A relative ``dir`` written in a recipe
    file is relative to that file's folder."""

    dir: str = input_path_field(
        metadata={"doc": "the folder `synthlearn sites export` wrote; only its `sites.json` "
                         "and `server.safetensors` are read (relative: to the recipe's "
                         "folder)"})


class ExportedDataset:
    """A deployment's data at the server: the export's test (and validation) split, and
    its sites by image count, class counts and fingerprint (``Dataset.remote_sites``).
    Site work must then run at the nodes (``runner: {use: flower}``); a run refuses the
    local runner and membership audits, which need the sites' images here."""

    def __init__(self, config: ExportedConfig) -> None:
        self.config = config

    def load(self, seed: int) -> Dataset:
        """Read and check the export (``read_export``); ``seed`` is not used: the
        export fixed the sites."""
        from synthlearn.sitework.site_file import read_export

        return read_export(self.config.dir)
