#!/usr/bin/env bash
# Smoke verification of a two-stage plan: every stage with tiny epochs and sizes into the plan's
# smoke root (minutes on CPU with the default demo plan). Re-running continues; a finished smoke
# run does nothing. Exit code: fertrain's (0 done, 1 a stage failed, 2 bad input).
# Usage: runners/smoke_two_stage.sh [--plan PLAN.yaml] [--root DIR] [--log-dir DIR] [--recover-stale-lock]
set -euo pipefail
plan=runners/plans/demo.yaml; log_dir=outputs/logs; extra=()
while [ $# -gt 0 ]; do
  case $1 in
    --plan) plan=$2; shift 2 ;;
    --log-dir) log_dir=$2; shift 2 ;;
    --root) extra+=(--root "$2"); shift 2 ;;
    --recover-stale-lock) extra+=(--recover-stale-lock); shift ;;
    -h|--help) sed -n 2,6p "$0"; exit 0 ;;
    *) echo "error: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
# shellcheck source=runners/_common.sh
. "$(dirname "$0")/_common.sh"
runner_setup smoke_two_stage "$log_dir"
set +e
"$FERTRAIN" pipeline run "$plan" --smoke "${extra[@]}" 2>&1 | tee -a "$LOG"
code=${PIPESTATUS[0]}
exit "$code"
