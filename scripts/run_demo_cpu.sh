#!/usr/bin/env bash
# The CPU demo: ActGuide-RL through verl's real V1 trainer on this machine, nothing external.
# WORLD=barrier (default): a world past a reachability barrier, where guidance teaches the unguided policy
# (README, "Does it learn?"):
#   1. builds the barrier world (actguide-preprocess build-barrier: multi-hop link chains, held-out entities);
#   2. takes the warm-started tiny base policy of SEED (seed 0: the shipped one, copied; another seed: trained once
#      on other tasks, ~2 min, then cached: python -m actguide_plugin.barrier.base_policy);
#   3. trains STEPS steps with python -m recipe.actguide.main_actguide --config-name actguide_barrier_cpu and
#      actguide.guided_clip=GUIDED_CLIP, validating (unguided, on unseen entities) every VAL_EVERY steps, then
#      prints the actguide/* metrics per step and the unguided validation accuracy.
# WORLD=offline: the FanOutQA/Wikipedia dataset (actguide-preprocess build-offline) with a tiny random Qwen3 model
#   with the Qwen vocabulary (or MODEL_PATH) and config actguide_cpu: every group is hard (nothing to learn).
# Settable: WORLD, STEPS, MODE [fallback_adaptive], GUIDED_CLIP [cispo, barrier], MODEL_PATH, ROLLOUT [hf;
# scripted = deterministic level-dependent answers for tests], WORK_DIR [./runs/demo_cpu], DATA_DIR
# [$WORK_DIR/data-$WORLD], N rollouts per prompt, BATCH prompts per step, RESPONSE_LEN response tokens (all turns),
# SEED [0], VAL_EVERY [10, barrier]. Extra hydra overrides may follow.
set -euo pipefail
cd "$(dirname "$0")/.."

WORLD=${WORLD:-barrier}
MODE=${MODE:-fallback_adaptive}
ROLLOUT=${ROLLOUT:-hf}
SEED=${SEED:-0}
WORK_DIR=$(realpath -m "${WORK_DIR:-./runs/demo_cpu}")
DATA_DIR=$(realpath -m "${DATA_DIR:-$WORK_DIR/data-$WORLD}")
PYTHON=${PYTHON:-python3}
mkdir -p "$WORK_DIR"

case "$WORLD" in
  barrier)
    STEPS=${STEPS:-30}; N=${N:-8}; BATCH=${BATCH:-8}; RESPONSE_LEN=${RESPONSE_LEN:-320}; VAL_EVERY=${VAL_EVERY:-10}
    GUIDED_CLIP=${GUIDED_CLIP:-cispo}  # the objective that learns here (README, "Does it learn?"); same = paper's
    CONFIG=actguide_barrier_cpu
    if [[ ! -f "$DATA_DIR/train.parquet" ]]; then
      echo "== building the barrier world (seed $SEED) in $DATA_DIR"
      "$PYTHON" -m data_preprocess build-barrier -o "$DATA_DIR" --seed "$SEED"
    fi
    if [[ -z "${MODEL_PATH:-}" ]]; then
      MODEL_PATH="$WORK_DIR/base-policy-seed$SEED"
      echo "== the warm-started base policy in $MODEL_PATH (seed 0: the shipped one; another seed: trained once)"
      "$PYTHON" -m actguide_plugin.barrier.base_policy "$MODEL_PATH" --seed "$SEED" --from-shipped >/dev/null
    fi
    WORLD_ARGS=(data.max_prompt_length=256 actor_rollout_ref.rollout.prompt_length=256
                "actguide.guided_clip=$GUIDED_CLIP" trainer.val_before_train=true "trainer.test_freq=$VAL_EVERY")
    ;;
  offline)
    STEPS=${STEPS:-2}; N=${N:-4}; BATCH=${BATCH:-2}; RESPONSE_LEN=${RESPONSE_LEN:-128}
    CONFIG=actguide_cpu
    if [[ ! -f "$DATA_DIR/train.parquet" ]]; then
      echo "== building the offline dataset in $DATA_DIR"
      "$PYTHON" -m data_preprocess build-offline -o "$DATA_DIR"
    fi
    if [[ -z "${MODEL_PATH:-}" ]]; then
      MODEL_PATH="$WORK_DIR/tiny-qwen3"
      if [[ ! -f "$MODEL_PATH/config.json" ]]; then
        echo "== building a tiny random Qwen3 model in $MODEL_PATH"
        "$PYTHON" -m actguide_plugin.cpu.tiny_model "$MODEL_PATH" --vocab qwen
      fi
    fi
    # One row per micro-batch (not actguide_cpu_settings.yaml's token budget): with the default model's 151,936-token
    # Qwen vocabulary the logits dominate, and packing rows pads them; measured 1.4x slower old-log-prob + update and
    # 2.7x the actor's memory with the token budget (docs/benchmarks.md, "Step cost").
    WORLD_ARGS=(data.max_prompt_length=2048 actor_rollout_ref.rollout.prompt_length=2048
                actor_rollout_ref.actor.optim.lr=1e-5 actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=1
                actor_rollout_ref.actor.use_dynamic_bsz=false
                actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu=1
                actor_rollout_ref.ref.log_prob_micro_batch_size_per_gpu=1
                actor_rollout_ref.rollout.multi_turn.max_assistant_turns=3
                actor_rollout_ref.rollout.multi_turn.max_tool_response_length=512
                trainer.val_before_train=false trainer.test_freq=-1)
    ;;
  *) echo "run_demo_cpu.sh: WORLD must be barrier or offline, got '$WORLD'" >&2; exit 2 ;;
esac
for f in train.parquet val.parquet corpus.jsonl; do
  [[ -f "$DATA_DIR/$f" ]] || { echo "run_demo_cpu.sh: $DATA_DIR/$f is missing" >&2; exit 2; }
done
[[ -f "$MODEL_PATH/config.json" ]] || { echo "run_demo_cpu.sh: no config.json in MODEL_PATH=$MODEL_PATH" >&2; exit 2; }

export TOKENIZERS_PARALLELISM=false
# verl warns in every process about optional engines (megatron, veomni, ...) it cannot import on CPU
export PYTHONWARNINGS="ignore::UserWarning:verl.workers.engine"
export ACTGUIDE_CORPUS="$DATA_DIR/corpus.jsonl"
export VERL_FILE_LOGGER_PATH="$WORK_DIR/metrics.jsonl"
rm -f "$VERL_FILE_LOGGER_PATH"

echo "== training ($WORLD world): $STEPS steps, mode=$MODE, rollout=$ROLLOUT, $BATCH prompts x $N rollouts per step"
"$PYTHON" -m recipe.actguide.main_actguide --config-name "$CONFIG" \
  actguide.mode="$MODE" \
  actor_rollout_ref.rollout.name="$ROLLOUT" \
  data.train_files="$DATA_DIR/train.parquet" \
  data.val_files="$DATA_DIR/val.parquet" \
  data.train_batch_size="$BATCH" \
  data.max_response_length="$RESPONSE_LEN" \
  data.seed="$SEED" \
  actor_rollout_ref.model.path="$MODEL_PATH" \
  actor_rollout_ref.actor.ppo_mini_batch_size="$BATCH" \
  actor_rollout_ref.rollout.n="$N" \
  actor_rollout_ref.rollout.seed="$SEED" \
  actor_rollout_ref.rollout.response_length="$RESPONSE_LEN" \
  trainer.total_training_steps="$STEPS" \
  trainer.total_epochs=1000 \
  trainer.save_freq="$STEPS" \
  trainer.default_local_dir="$WORK_DIR/checkpoints" \
  trainer.experiment_name="demo_cpu_${WORLD}_${MODE}" \
  trainer.logger='["console","file"]' \
  "${WORLD_ARGS[@]}" \
  "$@"

echo
echo "== ActGuide metrics per step (full log: $VERL_FILE_LOGGER_PATH)"
"$PYTHON" -m actguide_plugin.analysis.run_summary "$VERL_FILE_LOGGER_PATH"
echo "checkpoint: $WORK_DIR/checkpoints (warm-start cache: global_step_*/actguide_level_cache.json)"
