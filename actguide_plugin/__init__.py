"""actguide-rl: ActGuide-RL (arXiv 2605.12004) as a plugin recipe for verl 0.9.1.

Importing this package imports nothing from verl: the pure algorithm lives in :mod:`actguide_plugin.core`;
verl registrations happen in :mod:`actguide_plugin.verl_glue.plugin`, which verl loads through the
``verl.plugins`` entry point.
"""

__version__ = "0.1.0"
