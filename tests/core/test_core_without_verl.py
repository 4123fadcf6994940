import subprocess
import sys
import textwrap


def test_core_imports_and_runs_with_verl_absent():
    """The algorithm core must not import verl: block it and run a search + loss in a fresh interpreter."""
    code = textwrap.dedent(
        """
        import asyncio, sys
        sys.modules["verl"] = None  # any `import verl...` now raises ImportError
        import torch
        from actguide_plugin.core import actions, guidance, level_cache, metrics, objective, search

        async def rollout(level, count):
            return [float(level >= 2)] * count

        out = asyncio.run(search.run_group("t", 5, rollout, float, search.SearchConfig(n=4)))
        assert out.level == 2, out
        print(metrics.group_metrics([out], float)["rescued_frac"])
        losses, _ = objective.actguide_token_losses(
            torch.zeros(1, 2), torch.zeros(1, 2), torch.ones(1, 2), torch.tensor([True]), objective.ObjectiveConfig()
        )
        assert not any(name == "verl" or name.startswith("verl.") for name in sys.modules if sys.modules[name])
        """
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "1.0"
