#!/usr/bin/env bash
# The CPU demo: a few ActGuide-RL steps of verl's real V1 trainer on this machine, nothing external.
#   1. builds the offline FanOutQA/Wikipedia dataset and corpus (actguide-preprocess build-offline);
#   2. builds a tiny random Qwen3-architecture model with the Qwen vocabulary (or uses MODEL_PATH);
#   3. runs python -m recipe.actguide.main_actguide --config-name actguide_cpu (fsdp2 actor, HF rollout server,
#      local BM25 tools, rule reward), then prints the actguide/* metrics per step and where the logs and
#      checkpoint went.
# Settable: STEPS [2], MODE [fallback_adaptive], MODEL_PATH [tiny model], ROLLOUT [hf; scripted = deterministic
# level-dependent answers for tests], WORK_DIR [./runs/demo_cpu], DATA_DIR [$WORK_DIR/data], N [4] rollouts per
# prompt, BATCH [2] prompts per step, RESPONSE_LEN [128] response tokens (all turns). Extra hydra overrides may follow.
set -euo pipefail
cd "$(dirname "$0")/.."

STEPS=${STEPS:-2}
MODE=${MODE:-fallback_adaptive}
ROLLOUT=${ROLLOUT:-hf}
WORK_DIR=$(realpath -m "${WORK_DIR:-./runs/demo_cpu}")
DATA_DIR=$(realpath -m "${DATA_DIR:-$WORK_DIR/data}")
N=${N:-4}
BATCH=${BATCH:-2}
RESPONSE_LEN=${RESPONSE_LEN:-128}
PYTHON=${PYTHON:-python3}
mkdir -p "$WORK_DIR"

if [[ ! -f "$DATA_DIR/train.parquet" ]]; then
  echo "== building the offline dataset in $DATA_DIR"
  "$PYTHON" -m data_preprocess build-offline -o "$DATA_DIR"
fi
for f in train.parquet val.parquet corpus.jsonl; do
  [[ -f "$DATA_DIR/$f" ]] || { echo "run_demo_cpu.sh: $DATA_DIR/$f is missing" >&2; exit 2; }
done
if [[ -z "${MODEL_PATH:-}" ]]; then
  MODEL_PATH="$WORK_DIR/tiny-qwen3"
  if [[ ! -f "$MODEL_PATH/config.json" ]]; then
    echo "== building a tiny random Qwen3 model in $MODEL_PATH"
    "$PYTHON" -m actguide_plugin.cpu.tiny_model "$MODEL_PATH" --vocab qwen
  fi
fi
[[ -f "$MODEL_PATH/config.json" ]] || { echo "run_demo_cpu.sh: no config.json in MODEL_PATH=$MODEL_PATH" >&2; exit 2; }

export TOKENIZERS_PARALLELISM=false
# verl warns in every process about optional engines (megatron, veomni, ...) it cannot import on CPU
export PYTHONWARNINGS="ignore::UserWarning:verl.workers.engine"
export ACTGUIDE_CORPUS="$DATA_DIR/corpus.jsonl"
export VERL_FILE_LOGGER_PATH="$WORK_DIR/metrics.jsonl"
rm -f "$VERL_FILE_LOGGER_PATH"

# One row per micro-batch (not actguide_cpu.yaml's token budget): with the default model's 151,936-token Qwen
# vocabulary the logits dominate, and packing rows pads them; measured 1.4x slower old-log-prob + update and 2.7x the
# actor's memory with the token budget (docs/benchmarks.md, "Step cost"). A small-vocabulary model wants the budget.
echo "== training: $STEPS steps, mode=$MODE, rollout=$ROLLOUT, $BATCH prompts x $N rollouts per step"
"$PYTHON" -m recipe.actguide.main_actguide --config-name actguide_cpu \
  actguide.mode="$MODE" \
  actor_rollout_ref.rollout.name="$ROLLOUT" \
  data.train_files="$DATA_DIR/train.parquet" \
  data.val_files="$DATA_DIR/val.parquet" \
  data.train_batch_size="$BATCH" \
  data.max_prompt_length=2048 \
  data.max_response_length="$RESPONSE_LEN" \
  actor_rollout_ref.model.path="$MODEL_PATH" \
  actor_rollout_ref.actor.optim.lr=1e-5 \
  actor_rollout_ref.actor.ppo_mini_batch_size="$BATCH" \
  actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=1 \
  actor_rollout_ref.actor.use_dynamic_bsz=false \
  actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu=1 \
  actor_rollout_ref.ref.log_prob_micro_batch_size_per_gpu=1 \
  actor_rollout_ref.rollout.n="$N" \
  actor_rollout_ref.rollout.prompt_length=2048 \
  actor_rollout_ref.rollout.response_length="$RESPONSE_LEN" \
  actor_rollout_ref.rollout.multi_turn.max_assistant_turns=3 \
  actor_rollout_ref.rollout.multi_turn.max_tool_response_length=512 \
  trainer.total_training_steps="$STEPS" \
  trainer.total_epochs=1000 \
  trainer.val_before_train=false \
  trainer.test_freq=-1 \
  trainer.save_freq="$STEPS" \
  trainer.default_local_dir="$WORK_DIR/checkpoints" \
  trainer.experiment_name="demo_cpu_${MODE}" \
  trainer.logger='["console","file"]' \
  "$@"

echo
echo "== ActGuide metrics per step (full log: $VERL_FILE_LOGGER_PATH)"
"$PYTHON" -m actguide_plugin.cpu.run_summary "$VERL_FILE_LOGGER_PATH"
echo "checkpoint: $WORK_DIR/checkpoints (warm-start cache: global_step_*/actguide_level_cache.json)"
