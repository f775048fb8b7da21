#!/usr/bin/env bash
# Lock-aware cleaning: delete run directories under ROOT with `fertrain runs clean`, which refuses
# a locked (running) run and anything outside ROOT. --dry-run lists what would go.
# Usage: runners/clean_outputs.sh --root ROOT [--dry-run] [--log-dir DIR] RUN_DIR...
set -euo pipefail
root=""; log_dir=outputs/logs; extra=(); runs=()
while [ $# -gt 0 ]; do
  case $1 in
    --root) root=$2; shift 2 ;;
    --dry-run) extra+=(--dry-run); shift ;;
    --log-dir) log_dir=$2; shift 2 ;;
    -h|--help) sed -n 2,5p "$0"; exit 0 ;;
    -*) echo "error: unknown option $1 (see --help)" >&2; exit 2 ;;
    *) runs+=("$1"); shift ;;
  esac
done
if [ -z "$root" ] || [ ${#runs[@]} -eq 0 ]; then echo "error: need --root ROOT and at least one RUN_DIR" >&2; exit 2; fi
# shellcheck source=runners/_common.sh
. "$(dirname "$0")/_common.sh"
runner_setup clean_outputs "$log_dir"
set +e
"$FERTRAIN" runs clean --root "$root" "${extra[@]}" "${runs[@]}" 2>&1 | tee -a "$LOG"
exit "${PIPESTATUS[0]}"
