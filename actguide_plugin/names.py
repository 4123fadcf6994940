"""Every name that crosses a process or package boundary, defined once. No verl import.

A key written in one process and read in another (a TransferQueue field, an ``AgentLoopOutput.extra_fields``
key, a registry name, a metric prefix, an environment variable) is a constant here, so the agent loop, the
rollout workers, the trainer, the loss, the preprocessing CLI and the tests can never disagree on its spelling.
"""

import os

# --- names registered with verl ------------------------------------------------------------------------------
AGENT_NAME = "actguide_tool_agent"  # agent-loop registry; the dataset column ``agent_name`` selects it per sample
LOSS_NAME = "actguide"  # policy-loss registry; ``actor_rollout_ref.actor.policy_loss.loss_mode``
PATH_RESOLVER = "actguide_path"  # OmegaConf resolver: absolute path of a file shipped with actguide-rl

# --- per-trajectory fields -----------------------------------------------------------------------------------
# Set by the agent loop in ``AgentLoopOutput.extra_fields`` and carried to the trainer by the rollout workers
# (TransferQueue fields in verl's V1 trainer), then read by the prompt swap and the loss.
LEVEL_FIELD = "actguide_level"  # guidance level k the trajectory was sampled at (0 = unguided)
NUM_ACTIONS_FIELD = "actguide_num_actions"  # L, the task's number of reference actions
UNGUIDED_PROMPT_IDS_FIELD = "actguide_unguided_prompt_ids"  # token ids of the unguided prompt G_0
IS_GUIDED_FIELD = "actguide_is_guided"  # 1.0 for trajectories sampled with guidance, else 0.0
# Set by the agent loop for evaluation and analysis (trajectory records of actguide-eval):
STOP_REASON_FIELD = "actguide_stop_reason"  # why the loop ended: stop | turn_limit | length_limit
TOOL_CALLS_FIELD = "actguide_tool_calls"  # [{"name", "arguments"}] of the calls the loop executed
ASSISTANT_TURNS_FIELD = "actguide_assistant_turns"  # model turns in the trajectory

# --- metrics ---------------------------------------------------------------------------------------------------
METRIC_PREFIX = "actguide/"  # every metric this package logs
VAL_METRIC_PREFIX = "val-actguide/"  # validation metrics computed from every validation trajectory (pass@k, ...)

# --- run state -------------------------------------------------------------------------------------------------
STATE_ACTOR_NAME = "actguide_state"  # named Ray actor holding the warm-start cache and group summaries
RUN_CONFIG_FILE = "actguide_run_config.yaml"  # the run's resolved config, saved in every global_step_* folder
TOOL_CONFIG_FILE = "actguide_tool_config.yaml"  # the resolved tool yaml (corpus path, URLs), saved next to it
RUN_INFO = "actguide_run"  # top-level config key verl logs: what the recipe decided (reward, resolved tool config)
RUN_INFO_TOOLS = "tool_config"  # in RUN_INFO: the resolved tool yaml
ROWS_DUMP_FILE = "actguide_rows_step{step}.jsonl"  # in trainer.rollout_data_dir: what the trainer computed per row
GUIDED_PROMPT_TEXT = "guided_prompt"  # in that file: a guided row's prompt as sampled, as text (None when unguided)

# --- environment variables --------------------------------------------------------------------------------------
# Every ``ACTGUIDE_*`` variable the package reads, each with its one default (:data:`ENV_DEFAULTS`; None: unset).
# What changes a run's results is a config key, not a variable: the variables are process plumbing (log level, CPU
# mode, caches), the name of the judge's secret, and overrides of tool-yaml values, which the run resolves once and
# saves with every checkpoint. Read them with :func:`env_value`; tool yamls with ``${actguide_env:NAME}``.
LOG_LEVEL_ENV = "ACTGUIDE_LOGGING_LEVEL"  # log level of every actguide_plugin / data_preprocess logger
DEVICE_ENV = "ACTGUIDE_DEVICE"  # "cpu" in every process of a CPU run (set for Ray workers by actguide_cpu.yaml)
CPU_VISIBLE_DEVICES_ENV = "ACTGUIDE_CPU_VISIBLE_DEVICES"  # the CPU platform's "visible devices" variable for verl
CACHE_DIR_ENV = "ACTGUIDE_CACHE_DIR"  # converted tokenizers, and the network tools' SQLite caches
CORPUS_ENV = "ACTGUIDE_CORPUS"  # the local search tools' corpus.jsonl (tool yamls; actguide-retriever's default)
RETRIEVER_URL_ENV = "ACTGUIDE_RETRIEVER_URL"  # search_retrieval_server.yaml: the retrieval server's root
SEARCH_API_URL_ENV = "ACTGUIDE_SEARCH_API_URL"  # search_web_api.yaml: the search API
VISIT_API_URL_ENV = "ACTGUIDE_VISIT_API_URL"  # search_web_api.yaml: the page-fetch API
JUDGE_API_KEY_ENV = "ACTGUIDE_JUDGE_API_KEY"  # the judge's bearer key: reward_kwargs.judge_api_key_env names it

ENV_DEFAULTS: dict[str, str | None] = {
    LOG_LEVEL_ENV: "WARNING",
    DEVICE_ENV: None,
    CPU_VISIBLE_DEVICES_ENV: None,
    CACHE_DIR_ENV: "~/.cache/actguide-rl",
    CORPUS_ENV: "data/corpus.jsonl",
    RETRIEVER_URL_ENV: "http://127.0.0.1:8000",
    SEARCH_API_URL_ENV: "https://google.serper.dev/search",
    VISIT_API_URL_ENV: "https://scrape.serper.dev",
    JUDGE_API_KEY_ENV: None,
}
ENV_RESOLVER = "actguide_env"  # OmegaConf resolver: ``${actguide_env:ACTGUIDE_CORPUS}`` = env_value(...)

# Variables of earlier releases whose setting is now a config key: a run that still sets one is refused, by name.
REWARD_KWARGS = "reward.custom_reward_function.reward_kwargs"
RETIRED_ENV = {
    "ACTGUIDE_REWARD_MODE": f"{REWARD_KWARGS}.reward_mode",
    "ACTGUIDE_JUDGE_BASE_URL": f"{REWARD_KWARGS}.judge_base_url",
    "ACTGUIDE_JUDGE_MODEL": f"{REWARD_KWARGS}.judge_model",
}


def env_value(name: str) -> str | None:
    """The variable's value, else its declared default; a name not declared here is an error."""
    if name not in ENV_DEFAULTS:
        raise ValueError(f"{name} is not an actguide-rl environment variable; declared: {sorted(ENV_DEFAULTS)}")
    return os.environ.get(name, ENV_DEFAULTS[name])
