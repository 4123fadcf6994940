"""verl plugin entry point (group ``verl.plugins``): importing this module registers our names in verl.

verl 0.9.1 imports every ``verl.plugins`` entry point at the end of ``import verl``, in every process
(driver and Ray workers), and logs a failing plugin only at DEBUG level; ``tests/verl_glue/test_plugin.py``
therefore checks the registration in a fresh interpreter. Registered here:

* policy loss ``actguide`` (:mod:`actguide_plugin.verl_glue.loss`);
* agent loop ``actguide_tool_agent`` (:mod:`actguide_plugin.verl_glue.agent_loop`);
* CPU mode (:mod:`actguide_plugin.cpu`), only in processes with ``ACTGUIDE_DEVICE=cpu`` (``actguide_cpu.yaml``
  puts it into every Ray worker's environment): workers must switch before verl builds engines or process groups;
* OmegaConf resolver ``actguide_path``: ``${actguide_path:recipe/actguide/config/tools/search_local.yaml}``
  is the absolute path of a file shipped with actguide-rl, so configs work from any working directory and
  on every Ray node;
* OmegaConf resolver ``actguide_env``: ``${actguide_env:ACTGUIDE_CORPUS}`` in a tool yaml is the variable's value,
  else the one default :data:`actguide_plugin.names.ENV_DEFAULTS` declares (an undeclared name is an error).
"""

from pathlib import Path

from omegaconf import OmegaConf

from actguide_plugin.cpu import activate_if_requested
from actguide_plugin.names import ENV_RESOLVER, PATH_RESOLVER, env_value
from actguide_plugin.verl_glue import agent_loop, loss  # noqa: F401  (registration happens at import)

activate_if_requested()

PACKAGE_ROOT = Path(__file__).resolve().parents[2]


def shipped_path(relative: str) -> str:
    """Absolute path of a file shipped with actguide-rl (``relative`` to the installed package root)."""
    path = PACKAGE_ROOT / relative
    if not path.exists():
        raise FileNotFoundError(f"{PATH_RESOLVER}: {relative!r} is not a file shipped with actguide-rl ({path})")
    return str(path)


if not OmegaConf.has_resolver(PATH_RESOLVER):
    OmegaConf.register_new_resolver(PATH_RESOLVER, shipped_path)
if not OmegaConf.has_resolver(ENV_RESOLVER):
    OmegaConf.register_new_resolver(ENV_RESOLVER, env_value)
