"""verl plugin entry point (group ``verl.plugins``): importing this module registers our names in verl.

verl 0.9.1 imports every ``verl.plugins`` entry point at the end of ``import verl``, in every process
(driver and Ray workers), and logs a failing plugin only at DEBUG level; ``tests/test_verl_plugin.py``
therefore checks the registration in a fresh interpreter. Registered here:

* policy loss ``actguide`` (:mod:`actguide_plugin.verl_loss`);
* agent loop ``actguide_tool_agent`` (:mod:`actguide_plugin.agent_loop`);
* CPU mode (:mod:`actguide_plugin.cpu`), only when ``ACTGUIDE_DEVICE=cpu`` is set: the demo and CI run
  verl on CPU, and every Ray worker must switch before verl builds engines or process groups;
* OmegaConf resolver ``actguide_path``: ``${actguide_path:recipe/actguide/config/tools/search_local.yaml}``
  is the absolute path of a file shipped with actguide-rl, so configs work from any working directory and
  on every Ray node.
"""

from pathlib import Path

from omegaconf import OmegaConf

from actguide_plugin import agent_loop, verl_loss  # noqa: F401  (registration happens at import)
from actguide_plugin.cpu import activate_if_requested

activate_if_requested()

PACKAGE_ROOT = Path(__file__).resolve().parent.parent


def shipped_path(relative: str) -> str:
    path = PACKAGE_ROOT / relative
    if not path.exists():
        raise FileNotFoundError(f"actguide_path: {relative!r} is not a file shipped with actguide-rl ({path})")
    return str(path)


if not OmegaConf.has_resolver("actguide_path"):
    OmegaConf.register_new_resolver("actguide_path", shipped_path)
