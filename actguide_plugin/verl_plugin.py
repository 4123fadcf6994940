"""verl plugin entry point (group ``verl.plugins``): importing this module registers our names in verl.

verl 0.9.1 imports every ``verl.plugins`` entry point at the end of ``import verl``, in every process
(driver and Ray workers), and logs a failing plugin only at DEBUG level; ``tests/test_verl_plugin.py``
therefore checks the registration in a fresh interpreter.
"""

from actguide_plugin import verl_loss  # noqa: F401  (registers the "actguide" policy loss)
