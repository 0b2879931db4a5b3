"""keyword-filter in Python: keeps the tweets that mention a keyword (see ../keyword-filter)."""

import sluice_plugin
import sluice_transforms

WitWorld = sluice_plugin.world(sluice_transforms.KeywordFilter)
