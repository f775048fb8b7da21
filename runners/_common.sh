# Shared by the POSIX runners: find fertrain (the repo's .venv, else PATH), log to a dated file.
# Usage (sourced): runner_setup NAME LOG_DIR
runner_setup() {
  local name=$1 log_dir=$2 here
  here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
  if [ -x "$here/.venv/bin/fertrain" ]; then FERTRAIN="$here/.venv/bin/fertrain"; else FERTRAIN=$(command -v fertrain || true); fi
  if [ -z "$FERTRAIN" ]; then echo "error: fertrain not found: run \`make install\` in $here or activate its venv" >&2; exit 2; fi
  mkdir -p "$log_dir"
  LOG="$log_dir/${name}_$(date +%Y%m%d_%H%M%S).log"
  echo "logging to $LOG"
}
