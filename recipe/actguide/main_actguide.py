"""Hydra entry point of the ActGuide-RL recipe: ``python -m recipe.actguide.main_actguide`` (or ``actguide-train``).

Same flow as verl's ``verl.trainer.main_ppo`` (device detection, config validation, Ray, TaskRunner), with
ActGuide's TaskRunner for the trainer ``trainer.use_v1`` picks (V1, or the classic ``RayPPOTrainer``), the checks
of the settings the recipe needs (the ``actguide:`` section included) and of the training rows (agent loop,
reference actions) before Ray starts, and CPU mode for ``--config-name actguide_cpu`` (``trainer.device=cpu``).

A config error prints one line naming the key and exits with status 2 (as argparse does), on a real run as with
``--cfg job``: the command line is composed once before hydra runs, and the recipe's checks, hydra's composition and
verl's config dataclasses (in the driver or in the Ray TaskRunner) are reported by :func:`config_error_line`. A
genuine crash keeps its traceback; ``HYDRA_FULL_ERROR=1`` shows the traceback of a config error too.
"""

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import hydra
import yaml
from omegaconf import open_dict

from actguide_plugin.names import RETIRED_ENV, RUN_INFO
from actguide_plugin.verl_glue.config import actguide_config, check_verl_config
from actguide_plugin.verl_glue.reward_check import check_default_scorer, reward_in_use
from actguide_plugin.verl_glue.rollout import uses_v1
from actguide_plugin.verl_glue.rows import check_train_files

CONFIG_NAME = "actguide_trainer"
LAYER = "actguide_layer"  # config group of the recipe's required settings (config/actguide_layer/required.yaml)
RECIPE_CONFIG_PACKAGE = "pkg://recipe.actguide.config"
VERL_CONFIG_PACKAGE = "pkg://verl.trainer.config"  # ppo_trainer.yaml of the installed verl
# configs that carry the required layer (actguide_cpu_settings does not: it is CPU mode only)
RECIPE_CONFIGS = (LAYER, "actguide_recipe", "actguide_trainer", "actguide_cpu", "actguide_barrier_cpu")


class PreflightError(ValueError):
    """A setting or the training data cannot work; the message names what to change."""


CONFIG_ERROR_STATUS = 2  # exit status of a config error: the command line or a config is wrong (argparse's usage)
FULL_ERROR_VARIABLE = "HYDRA_FULL_ERROR"  # hydra's own switch; "1": tracebacks of config errors too


DRY_RUN_FLAG = "--dry-run"
_dry_run = False  # set by main() from the command line (hydra's own parser does not know the flag)


@hydra.main(config_path="config", config_name=CONFIG_NAME, version_base=None)
def run(config) -> None:
    try:
        launch(config, dry_run=_dry_run)
    except Exception as err:
        _exit_on_config_error(err)
        raise


def config_error_line(err: BaseException) -> str | None:
    """The one line that states a config error, or None for a crash (which keeps its traceback).

    Config errors are the recipe's checks (:class:`PreflightError`), hydra's composition of the command line
    (unknown key, bad override, missing config) and a verl config dataclass refusing its section — hydra's
    ``InstantiationException``, in the driver or re-raised from the Ray TaskRunner, whose message ends in
    ``full_key: <section>``; that key leads the line.
    """
    from hydra.errors import CompactHydraException, InstantiationException, OverrideParseException
    from ray.exceptions import RayTaskError

    if isinstance(err, RayTaskError):  # the exception the TaskRunner raised, without the worker's traceback text
        err = err.cause
    if isinstance(err, PreflightError):
        return str(err)
    if isinstance(err, InstantiationException):  # "Error in call to target 'T':\nrepr(cause)\nfull_key: K"
        lines = str(err).strip().splitlines()
        key = lines.pop()[len("full_key: ") :] if lines and lines[-1].startswith("full_key: ") else None
        target = lines[0].removeprefix("Error in call to target ").rstrip(":").strip("'")
        return f"{key or 'config'} ({target}): {' '.join(lines[1:])}"
    if isinstance(err, CompactHydraException):  # composition: the first paragraph, and what the cause says
        line = " ".join(str(err).strip().split("\n\n")[0].split())
        if isinstance(err, OverrideParseException):
            line = f"cannot parse the override {err.override!r}: {line}"
        cause = str(err.__cause__).strip().splitlines()[0] if err.__cause__ else ""
        return f"{line} ({cause})" if cause else line
    return None


def _exit_on_config_error(err: BaseException) -> None:
    """Exit with one ``error:`` line and status 2 if ``err`` is a config error; return (to re-raise) otherwise."""
    line = config_error_line(err)
    if line is not None and os.environ.get(FULL_ERROR_VARIABLE) != "1":
        print(f"error: {line}", file=sys.stderr, flush=True)
        sys.exit(CONFIG_ERROR_STATUS)


def launch(config, dry_run: bool = False) -> None:
    """Run a composed recipe config (training, or validation only with ``trainer.val_only=true``); with ``dry_run``
    only the checks and the per-step arithmetic (:mod:`actguide_plugin.verl_glue.dry_run`), nothing started."""
    from verl.trainer.main_ppo import run_ppo
    from verl.trainer.ppo.utils import need_critic, need_reference_policy
    from verl.utils.config import validate_config
    from verl.utils.device import auto_set_device

    if not dry_run:
        if config.trainer.device == "cpu":
            from actguide_plugin.cpu import activate

            activate()  # the driver; Ray workers activate through the runtime_env of actguide_cpu_settings.yaml
        auto_set_device(config)
    val_only = bool(config.trainer.get("val_only", False))
    check_retired_env()
    try:
        actguide = check_verl_config(config)
        if actguide.mode != "off" and not val_only:
            check_train_files(config.data.train_files)
        check_default_scorer(config, config.data.val_files if val_only else config.data.train_files)
        validate_config(config, use_reference_policy=need_reference_policy(config), use_critic=need_critic(config))
        reward = reward_in_use(config)
    except (ValueError, AssertionError) as err:  # verl's own checks assert
        raise PreflightError(str(err)) from err
    print(f"actguide-train: reward: {reward}", file=sys.stderr, flush=True)
    if dry_run:
        from actguide_plugin.verl_glue.dry_run import batch_plan

        print("actguide-train --dry-run: the config composes and passes verl's and the recipe's checks")
        print("\n".join(f"  {line}" for line in batch_plan(config, actguide, reward)))
        return
    with open_dict(config):
        config[RUN_INFO] = {"reward": reward}  # in the config verl logs (console, file, wandb, ...)
    if uses_v1(config):
        from actguide_plugin.verl_glue.trainer_v1 import ActGuideTaskRunner as runner
    else:  # verl's classic RayPPOTrainer; TransferQueue is never imported
        from actguide_plugin.verl_glue.trainer_v0 import ActGuideTaskRunnerV0 as runner
    run_ppo(config, task_runner_class=runner)


def check_retired_env() -> None:
    """Refuse a variable of an earlier release whose setting is now a config key: it would be silently ignored."""
    stale = [f"{name} (now the config key {key})" for name, key in RETIRED_ENV.items() if name in os.environ]
    if stale:
        raise PreflightError(f"unset {', '.join(stale)}: a run's settings live in its logged config")


def compose_config(config_name: str = CONFIG_NAME, overrides: list[str] | None = None, config_dir: str | None = None):
    """The config as ``actguide-train`` would compose it (the recipe's, or a user's from ``config_dir``)."""
    from hydra import compose, initialize_config_dir, initialize_config_module

    init = (
        initialize_config_dir(config_dir=config_dir, version_base=None)
        if config_dir
        else initialize_config_module(config_module="recipe.actguide.config", version_base=None)
    )
    with init:
        return compose(config_name=config_name, overrides=list(overrides or []))


@dataclass
class HydraArgs:
    """A command line split into hydra's flags (in order, with their values) and ``key=value`` overrides."""

    flags: list[str] = field(default_factory=list)
    overrides: list[str] = field(default_factory=list)
    config_path: str | None = None  # --config-path/-cp: replaces the primary config directory
    config_dir: str | None = None  # --config-dir/-cd: adds a directory to the search path
    config_name: str = CONFIG_NAME

    def argv(self) -> list[str]:
        """Flags first, then every override: argparse takes hydra's positional overrides in one run only."""
        return [*self.flags, *self.overrides]


_VALUE_FLAGS = {"--config-path": "config_path", "-cp": "config_path", "--config-dir": "config_dir",
                "-cd": "config_dir", "--config-name": "config_name", "-cn": "config_name"}  # fmt: skip
_OTHER_VALUE_FLAGS = ("--cfg", "-c", "--package", "-p", "--info", "-i", "--experimental-rerun")


def parse_hydra_args(argv: list[str]) -> HydraArgs:
    args, target = HydraArgs(), None
    for arg in argv:
        name, has_value, value = arg.partition("=")
        if target is not None:
            args.flags.append(arg)
            if target:
                setattr(args, target, arg)
            target = None
        elif arg in _VALUE_FLAGS or arg in _OTHER_VALUE_FLAGS:
            args.flags.append(arg)
            target = _VALUE_FLAGS.get(arg, "")
        elif arg.startswith("-"):
            args.flags.append(arg)
            if has_value and name in _VALUE_FLAGS:
                setattr(args, _VALUE_FLAGS[name], value)
        else:
            args.overrides.append(arg)
    return args


def _includes_recipe(defaults: list) -> bool:
    """Whether a ``defaults:`` list names the required layer or one of the recipe's configs that include it."""
    names = [name for entry in defaults for name in (entry if isinstance(entry, dict) else {entry: None})]
    return any(str(name).strip("/").split("@")[0].split("/")[0] in RECIPE_CONFIGS for name in names)


def layer_user_config(argv: list[str]) -> list[str]:
    """``argv`` with the recipe's required settings layered over a user's own yaml, if it does not include them.

    A verl user keeps ``--config-path DIR --config-name THEIRS``: their tools, reward, lengths and optimizer stay;
    ``+actguide_layer=required`` (the ``actguide:`` section and the keys ActGuide needs) is appended after their
    ``_self_``, and the recipe's config package (and verl's, for ``ppo_trainer``) is added to their search path.
    A relative ``--config-path`` that exists under the working directory is made absolute (hydra would look next to
    this module). The user's yaml is read as plain YAML, to see whether its ``defaults:`` name the recipe already.
    """
    args = parse_hydra_args(argv)
    folder = args.config_path or args.config_dir
    if folder is None:
        return argv
    if args.config_path and not Path(folder).is_absolute() and Path(folder).is_dir():
        folder = str(Path(folder).resolve())
        args.flags = [f for f in args.flags if f not in ("--config-path", "-cp", args.config_path)
                      and not f.startswith(("--config-path=", "-cp="))] + [f"--config-path={folder}"]  # fmt: skip
    name = args.config_name if args.config_name.endswith(".yaml") else f"{args.config_name}.yaml"
    user_yaml = Path(folder) / name
    if not user_yaml.is_file():
        return args.argv()  # hydra reports a missing config; one found elsewhere is checked after composition
    document = yaml.safe_load(user_yaml.read_text(encoding="utf-8")) or {}
    if _includes_recipe(document.get("defaults") or []):
        return args.argv()
    print(f"actguide-train: layering the recipe's required settings over {user_yaml} (+{LAYER}=required)",
          file=sys.stderr)  # fmt: skip
    if args.config_path:  # our config package is no longer the primary directory: put it on the search path
        given = [o for o in args.overrides if o.startswith("hydra.searchpath=")]
        paths = [p.strip() for o in given for p in o.split("=", 1)[1].strip("[]").split(",") if p.strip()]
        paths = paths or list((document.get("hydra") or {}).get("searchpath") or [])
        paths += [p for p in (VERL_CONFIG_PACKAGE, RECIPE_CONFIG_PACKAGE) if p not in paths]
        args.overrides = [o for o in args.overrides if o not in given] + [f"hydra.searchpath=[{','.join(paths)}]"]
    args.overrides.append(f"+{LAYER}=required")
    return args.argv()


# hydra flags after which the command line is not one job's config: hydra handles them itself
_NOT_ONE_JOB = ("-m", "--multirun", "-h", "--help", "--hydra-help", "--version", "--info", "-i", "--shell-completion",
                "-sc", "--experimental-rerun")  # fmt: skip


def check_command_line(argv: list[str]) -> None:
    """Compose the command line's config before hydra does, so a composition error is one line (hydra prints seven),
    and validate the ``actguide:`` section when ``--cfg`` prints the config without running ``run``."""
    if any(arg.split("=")[0] in _NOT_ONE_JOB for arg in argv):
        return
    try:
        config = _compose_command_line(argv)
        if any(arg in ("--cfg", "-c") or arg.startswith("--cfg=") for arg in argv):
            try:
                actguide_config(config)
            except ValueError as err:
                raise PreflightError(str(err)) from err
    except Exception as err:
        _exit_on_config_error(err)
        raise


def _compose_command_line(argv: list[str]):
    """The config hydra's ``run`` will get for ``argv`` (its ``hydra.*`` settings aside)."""
    args = parse_hydra_args(argv)
    overrides = [
        o for o in args.overrides if not o.startswith(("hydra.", "+hydra.")) or o.startswith("hydra.searchpath=")
    ]
    if args.config_dir and not args.config_path:
        overrides.append(f"hydra.searchpath=[file://{Path(args.config_dir).resolve()}]")
    folder = str(Path(args.config_path).resolve()) if args.config_path else None
    return compose_config(args.config_name, overrides, folder)


def main() -> None:
    global _dry_run
    _dry_run = DRY_RUN_FLAG in sys.argv[1:]
    sys.argv = [sys.argv[0], *layer_user_config([a for a in sys.argv[1:] if a != DRY_RUN_FLAG])]
    check_command_line(sys.argv[1:])
    run()


if __name__ == "__main__":
    main()
