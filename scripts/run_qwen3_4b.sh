#!/usr/bin/env bash
# ActGuide-RL in the paper's setting: Qwen3-4B-Instruct-2507, 1 node x 8 GPUs, 32 prompts x n=8 per step in
# mini-batches of 16 prompts (2 optimizer steps per step), 1 epoch over the data, lr 1e-6, up to 30 assistant turns,
# long responses, LLM-judge reward, the search agent on the local retriever. README lists what differs from the
# authors' release and why.
#
# Every path and endpoint comes from the environment (defaults in brackets):
#   MODEL_PATH      local HF model directory                       [$HOME/models/Qwen3-4B-Instruct-2507]
#   DATA_DIR        train.parquet, val.parquet, corpus.jsonl        [./data/actguide]  (actguide-preprocess)
#   TOOL_CONFIG     tool yaml (local / retrieval_server / web_api)  [recipe/actguide/config/tools/search_local.yaml]
#   REWARD_MODE     judge | rule                                    [judge]
#   JUDGE_BASE_URL, JUDGE_MODEL  the judge endpoint (OpenAI-compatible server root, model name); they go into the
#                   config (reward.custom_reward_function.reward_kwargs.*) like every reward setting
#   ACTGUIDE_JUDGE_API_KEY       the judge's key, optional: the only reward input read from the environment
#   MODE            actguide.mode                                   [fallback_adaptive]
#   NGPUS, NNODES   [8, 1]    ROLLOUT_NAME [sglang]    TP [2]    (the release: SGLang, tensor parallel 2)
#   PROMPT_LEN [40960]  RESPONSE_LEN [40960]  MAX_MODEL_LEN [61440]   (the release's lengths)
#   LOSS_AGG   [seq-mean-token-mean]  (the release: token-mean per micro-batch of 1 = every trajectory weighs the
#              same; token-mean weighs every token the same)
#   JUDGE_INPUT [response]  (the release: the judge reads the whole decoded response; answer = the final <answer>)
#   EPOCHS [1]  MINI_BATCH [16]  SAVE_FREQ [20]  TEST_FREQ [20]
#   CKPT_DIR        [./checkpoints/<experiment>]   EXPERIMENT [actguide_qwen3_4b_<MODE>]
# Extra hydra overrides can be appended: bash scripts/run_qwen3_4b.sh trainer.total_training_steps=100
# DRY_RUN=1: compose the full config, run verl's and the recipe's checks, print the per-step arithmetic (prompts x n,
# optimizer steps, token budget per GPU) and exit: no Ray, no model; missing files are reported, not fatal.
set -euo pipefail
cd "$(dirname "$0")/.."

MODEL_PATH=${MODEL_PATH:-$HOME/models/Qwen3-4B-Instruct-2507}
DATA_DIR=${DATA_DIR:-./data/actguide}
TOOL_CONFIG=${TOOL_CONFIG:-recipe/actguide/config/tools/search_local.yaml}
REWARD_MODE=${REWARD_MODE:-judge}
JUDGE_BASE_URL=${JUDGE_BASE_URL:-}
JUDGE_MODEL=${JUDGE_MODEL:-}
MODE=${MODE:-fallback_adaptive}
NGPUS=${NGPUS:-8}
NNODES=${NNODES:-1}
ROLLOUT_NAME=${ROLLOUT_NAME:-sglang}
TP=${TP:-2}
PROMPT_LEN=${PROMPT_LEN:-40960}
RESPONSE_LEN=${RESPONSE_LEN:-40960}
MAX_MODEL_LEN=${MAX_MODEL_LEN:-61440}
LOSS_AGG=${LOSS_AGG:-seq-mean-token-mean}
JUDGE_INPUT=${JUDGE_INPUT:-response}
EPOCHS=${EPOCHS:-1}
MINI_BATCH=${MINI_BATCH:-16}
SAVE_FREQ=${SAVE_FREQ:-20}
TEST_FREQ=${TEST_FREQ:-20}
EXPERIMENT=${EXPERIMENT:-actguide_qwen3_4b_${MODE}}
CKPT_DIR=${CKPT_DIR:-./checkpoints/${EXPERIMENT}}

missing=()
[[ -f "$MODEL_PATH/config.json" ]] || missing+=("model: no config.json in MODEL_PATH=$MODEL_PATH (a local HF model directory)")
for f in train.parquet val.parquet; do
  [[ -f "$DATA_DIR/$f" ]] || missing+=("data: $DATA_DIR/$f not found (DATA_DIR; build it with: actguide-preprocess build-offline -o $DATA_DIR, or convert your trajectories)")
done
[[ -f "$TOOL_CONFIG" ]] || missing+=("tools: TOOL_CONFIG=$TOOL_CONFIG not found")
if [[ "$TOOL_CONFIG" == *search_local.yaml ]]; then
  [[ -f "$DATA_DIR/corpus.jsonl" ]] || missing+=("corpus: $DATA_DIR/corpus.jsonl not found (the local retriever's corpus)")
fi
case "$REWARD_MODE" in
  judge)
    [[ -n "$JUDGE_BASE_URL" ]] || missing+=("judge: set JUDGE_BASE_URL (an OpenAI-compatible server) or REWARD_MODE=rule")
    [[ -n "$JUDGE_MODEL" ]] || missing+=("judge: set JUDGE_MODEL (the judge model name) or REWARD_MODE=rule")
    ;;
  rule) ;;
  *) missing+=("REWARD_MODE=$REWARD_MODE is not judge or rule") ;;
esac
if (( ${#missing[@]} )); then
  if [[ "${DRY_RUN:-0}" == 1 ]]; then
    echo "run_qwen3_4b.sh: (dry run) a real run would stop here:" >&2
    printf '  - %s\n' "${missing[@]}" >&2
  else
    echo "run_qwen3_4b.sh: cannot start:" >&2
    printf '  - %s\n' "${missing[@]}" >&2
    exit 2
  fi
fi
DRY_RUN_ARGS=()
[[ "${DRY_RUN:-0}" == 1 ]] && DRY_RUN_ARGS=(--dry-run)

export ACTGUIDE_CORPUS=$(realpath "$DATA_DIR/corpus.jsonl" 2>/dev/null || echo "")  # resolved into the saved tool config
JUDGE_ARGS=()  # null in the config unless given (rule mode needs neither)
[[ -n "$JUDGE_BASE_URL" ]] && JUDGE_ARGS+=(reward.custom_reward_function.reward_kwargs.judge_base_url="$JUDGE_BASE_URL")
[[ -n "$JUDGE_MODEL" ]] && JUDGE_ARGS+=(reward.custom_reward_function.reward_kwargs.judge_model="$JUDGE_MODEL")

python3 -m recipe.actguide.main_actguide "${DRY_RUN_ARGS[@]}" \
  +actguide_reward=answer \
  reward.custom_reward_function.reward_kwargs.reward_mode="$REWARD_MODE" \
  reward.custom_reward_function.reward_kwargs.judge_input="$JUDGE_INPUT" \
  "${JUDGE_ARGS[@]}" \
  actguide.mode="$MODE" \
  data.train_files="$(realpath -m "$DATA_DIR/train.parquet")" \
  data.val_files="$(realpath -m "$DATA_DIR/val.parquet")" \
  data.train_batch_size=32 \
  data.max_prompt_length="$PROMPT_LEN" \
  data.max_response_length="$RESPONSE_LEN" \
  data.filter_overlong_prompts=True \
  actor_rollout_ref.model.path="$MODEL_PATH" \
  actor_rollout_ref.model.use_remove_padding=True \
  actor_rollout_ref.model.enable_gradient_checkpointing=True \
  actor_rollout_ref.actor.strategy=fsdp2 \
  actor_rollout_ref.actor.optim.lr=1e-6 \
  actor_rollout_ref.actor.ppo_mini_batch_size="$MINI_BATCH" \
  actor_rollout_ref.actor.use_dynamic_bsz=True \
  actor_rollout_ref.actor.loss_agg_mode="$LOSS_AGG" \
  actor_rollout_ref.actor.ppo_max_token_len_per_gpu=$((PROMPT_LEN + RESPONSE_LEN)) \
  actor_rollout_ref.ref.log_prob_max_token_len_per_gpu=$((PROMPT_LEN + RESPONSE_LEN)) \
  actor_rollout_ref.rollout.log_prob_max_token_len_per_gpu=$((PROMPT_LEN + RESPONSE_LEN)) \
  actor_rollout_ref.rollout.name="$ROLLOUT_NAME" \
  actor_rollout_ref.rollout.n=8 \
  actor_rollout_ref.rollout.tensor_model_parallel_size="$TP" \
  actor_rollout_ref.rollout.gpu_memory_utilization=0.6 \
  actor_rollout_ref.rollout.max_model_len="$MAX_MODEL_LEN" \
  actor_rollout_ref.rollout.multi_turn.max_assistant_turns=30 \
  actor_rollout_ref.rollout.multi_turn.tool_config_path="$(realpath -m "$TOOL_CONFIG")" \
  trainer.n_gpus_per_node="$NGPUS" \
  trainer.nnodes="$NNODES" \
  trainer.total_epochs="$EPOCHS" \
  trainer.save_freq="$SAVE_FREQ" \
  trainer.test_freq="$TEST_FREQ" \
  trainer.experiment_name="$EXPERIMENT" \
  trainer.default_local_dir="$CKPT_DIR" \
  trainer.logger='["console","tensorboard"]' \
  "$@"
