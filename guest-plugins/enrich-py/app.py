"""enrich in Python: adds @timestamp and the `sluice` object to tweets (see ../enrich)."""

import sluice_plugin
import sluice_transforms

WitWorld = sluice_plugin.world(sluice_transforms.Enrich)
