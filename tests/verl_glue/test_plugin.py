import subprocess
import sys


def test_import_verl_registers_actguide_in_a_fresh_interpreter(tmp_path):
    """verl loads `verl.plugins` entry points on import and hides failures at DEBUG: check it for real."""
    code = (
        "import verl\n"
        "from verl.trainer.ppo.core_algos import POLICY_LOSS_REGISTRY\n"
        "print('actguide' in POLICY_LOSS_REGISTRY)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "True"
