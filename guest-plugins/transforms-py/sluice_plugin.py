"""The glue between a transform of sluice_transforms and the WIT world `transform`."""

from componentize_py_types import Err
from wit_world.imports import log, types

import sluice_transforms as st

_NOT_INITIALISED = "not initialised: process was called before a successful init"


def world(transform_class):
    """A WitWorld class exporting `init` and `process` for `transform_class`."""
    state = {"transform": None}

    class WitWorld:
        def init(self, config):
            try:
                transform = transform_class(config)
            except st.Fail as e:
                raise Err(str(e)) from None
            log.log(log.Level.INFO, transform.summary())
            state["transform"] = transform

        def process(self, batch):
            transform = state["transform"]
            if transform is None:
                return [types.Outcome_Fail(_NOT_INITIALISED) for _ in batch]
            out = []
            for record in batch:
                o = transform.apply(record.value)
                if o is st.KEEP:
                    out.append(types.Outcome_Keep())
                elif o is st.DROP:
                    out.append(types.Outcome_Drop())
                elif o[0] == "set":
                    out.append(types.Outcome_SetValue(o[1]))
                else:
                    out.append(types.Outcome_Fail(o[1]))
            return out

    return WitWorld
