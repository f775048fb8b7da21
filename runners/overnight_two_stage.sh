#!/usr/bin/env bash
# The overnight two-stage run (runners/plans/two_stage_overnight.yaml by default). Re-run the same
# command after a crash or power loss: finished stages are skipped, the interrupted one resumes.
# Exit code: fertrain's (0 done, 1 a stage failed, 2 bad input).
# Usage: runners/overnight_two_stage.sh [--plan PLAN.yaml] [--root DIR] [--log-dir DIR] [--recover-stale-lock] [--keep-going]
set -euo pipefail
plan=runners/plans/two_stage_overnight.yaml; log_dir=outputs/logs; extra=(); where=()
while [ $# -gt 0 ]; do
  case $1 in
    --plan) plan=$2; shift 2 ;;
    --log-dir) log_dir=$2; shift 2 ;;
    --root) where=(--root "$2"); shift 2 ;;
    --recover-stale-lock) extra+=(--recover-stale-lock); shift ;;
    --keep-going) extra+=(--keep-going); shift ;;
    -h|--help) sed -n 2,5p "$0"; exit 0 ;;
    *) echo "error: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
# shellcheck source=runners/_common.sh
. "$(dirname "$0")/_common.sh"
runner_setup overnight_two_stage "$log_dir"
set +e
"$FERTRAIN" pipeline run "$plan" "${where[@]}" "${extra[@]}" 2>&1 | tee -a "$LOG"
code=${PIPESTATUS[0]}
"$FERTRAIN" pipeline status "$plan" "${where[@]}" 2>&1 | tee -a "$LOG"
exit "$code"
