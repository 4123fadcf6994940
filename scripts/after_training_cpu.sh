#!/usr/bin/env bash
# After training, on CPU: the README's "After training" example, produced by the commands themselves.
#   1. scripted tasks with known guidance thresholds (scripts/make_scripted_tasks.py, actguide-preprocess convert);
#   2. a short ActGuide run of verl's trainer (scripts/run_demo_cpu.sh, scripted rollout, tiny byte-vocabulary model);
#   3. actguide-export of the last checkpoint;
#   4. actguide-eval of the exported model on the held-out tasks (K = 3 samples per prompt);
#   5. actguide-analyze training (the run's metrics.jsonl), levels and barrier (Findings 2 and 1).
# The scripted policy does not learn: the numbers show the outputs' form and the known thresholds, not training.
# Settable: WORK_DIR [./runs/after_training], STEPS [4], PYTHON [python3], DOCS_IMAGES (copy the PNGs there).
set -euo pipefail
cd "$(dirname "$0")/.."

WORK_DIR=$(realpath -m "${WORK_DIR:-./runs/after_training}")
STEPS=${STEPS:-4}
PYTHON=${PYTHON:-python3}
BIN=$(dirname "$(command -v "$PYTHON")")
DATA="$WORK_DIR/data"
LIMITS=(
  actor_rollout_ref.rollout.multi_turn.max_assistant_turns=5
  actor_rollout_ref.rollout.multi_turn.max_tool_response_length=256
)
mkdir -p "$WORK_DIR"

echo "== 1. scripted tasks in $DATA"
"$PYTHON" scripts/make_scripted_tasks.py "$WORK_DIR/tasks" --tasks 20
"$PYTHON" -m data_preprocess convert "$WORK_DIR/tasks/records.jsonl" -o "$DATA" --format actions \
  --data-source scripted --val-ratio 0.25 --seed 0
cp "$WORK_DIR/tasks/corpus.jsonl" "$DATA/corpus.jsonl"
export ACTGUIDE_CORPUS="$DATA/corpus.jsonl"
MODEL="$WORK_DIR/tiny-bytes"
[[ -f "$MODEL/config.json" ]] || "$PYTHON" -m actguide_plugin.cpu.tiny_model "$MODEL" --vocab bytes

echo "== 2. training: $STEPS steps"
PYTHON="$PYTHON" WORLD=offline ROLLOUT=scripted STEPS="$STEPS" N=4 BATCH=4 RESPONSE_LEN=1024 MODEL_PATH="$MODEL" DATA_DIR="$DATA" \
  WORK_DIR="$WORK_DIR/run" bash scripts/run_demo_cpu.sh "${LIMITS[@]}"

echo "== 3. export"
"$BIN/actguide-export" "$WORK_DIR/run/checkpoints/global_step_$STEPS" --out "$WORK_DIR/exported" --overwrite

echo "== 4. evaluation"
"$BIN/actguide-eval" --model "$WORK_DIR/exported" --data "$DATA/val.parquet" --samples 3 --out "$WORK_DIR/eval" --device cpu \
  actor_rollout_ref.rollout.name=scripted data.max_prompt_length=2048 actor_rollout_ref.rollout.prompt_length=2048 \
  actor_rollout_ref.rollout.response_length=1024 actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=1 \
  actor_rollout_ref.actor.use_dynamic_bsz=false actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu=1 \
  "${LIMITS[@]}"

echo "== 5. analysis"
ANALYSIS=(--model "$WORK_DIR/exported" --data "$DATA/train.parquet" --samples 4 --scripted --out "$WORK_DIR/analysis"
  actor_rollout_ref.rollout.prompt_length=2048 actor_rollout_ref.rollout.response_length=1024 "${LIMITS[@]}")
"$BIN/actguide-analyze" training "$WORK_DIR/run/metrics.jsonl" --label actguide --out "$WORK_DIR/analysis"
"$BIN/actguide-analyze" levels "${ANALYSIS[@]}"
"$BIN/actguide-analyze" barrier "${ANALYSIS[@]}"

if [[ -n "${DOCS_IMAGES:-}" ]]; then
  mkdir -p "$DOCS_IMAGES"
  cp "$WORK_DIR/analysis/"{training,levels,barrier}.png "$DOCS_IMAGES/"
fi
echo "results: $WORK_DIR/eval (eval.md, eval.json, trajectories.jsonl), $WORK_DIR/analysis (PNG, md, json)"
