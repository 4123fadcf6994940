#!/usr/bin/env bash
# The comparison run: exactly run_qwen3_4b.sh's settings with guidance off (plain GRPO, same loss path).
set -euo pipefail
MODE=off exec bash "$(dirname "$0")/run_qwen3_4b.sh" "$@"
