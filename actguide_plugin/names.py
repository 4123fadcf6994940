"""Every name that crosses a process or package boundary, defined once. No verl import.

A key written in one process and read in another (a TransferQueue field, an ``AgentLoopOutput.extra_fields``
key, a registry name, a metric prefix, an environment variable) is a constant here, so the agent loop, the
rollout workers, the trainer, the loss, the preprocessing CLI and the tests can never disagree on its spelling.
"""

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
ROWS_DUMP_FILE = "actguide_rows_step{step}.jsonl"  # in trainer.rollout_data_dir: what the trainer computed per row
GUIDED_PROMPT_TEXT = "guided_prompt"  # in that file: a guided row's prompt as sampled, as text (None when unguided)

# --- environment variables --------------------------------------------------------------------------------------
LOG_LEVEL_ENV = "ACTGUIDE_LOGGING_LEVEL"  # log level of every actguide_plugin / data_preprocess logger
DEVICE_ENV = "ACTGUIDE_DEVICE"  # "cpu" in every process of a CPU run (set for Ray workers by actguide_cpu.yaml)
CACHE_DIR_ENV = "ACTGUIDE_CACHE_DIR"  # where converted tokenizers are cached (default ~/.cache/actguide-rl)
