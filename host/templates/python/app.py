"""{{name}}: a Sluice transform plugin. It keeps the records whose value contains the
configured `needle` and drops the others; a value that is not UTF-8 is dead-lettered."""

from componentize_py_types import Err
from wit_world.imports import log, types

needle = None


class WitWorld:
    def init(self, config):
        """Called once per instance with the `config` table of pipeline.toml; raising Err
        rejects it."""
        global needle
        for key, value in config:
            if key != "needle":
                raise Err(f"unknown config key `{key}` (known keys: needle)")
            needle = value
        if needle is None:
            raise Err("config key `needle` is required")
        log.log(log.Level.INFO, f"keeping records that contain {needle!r}")

    def process(self, batch):
        """One outcome per record, in order."""
        out = []
        for record in batch:
            try:
                text = record.value.decode("utf-8")
            except UnicodeDecodeError as e:
                out.append(types.Outcome_Fail(f"not valid UTF-8: {e}"))
                continue
            out.append(types.Outcome_Keep() if needle in text else types.Outcome_Drop())
        return out
