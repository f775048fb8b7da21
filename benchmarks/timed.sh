# Sourced by the device scripts: `timed NAME CMD...` runs CMD with its output in $out/NAME.log,
# its exit status in $out/NAME.rc and its whole wall time in seconds in $out/NAME.sec;
# `finished RUN_DIR` is true when the run's run_status.json says it finished.
timed() {
  local name=$1; shift
  local t0; t0=$(date +%s.%N)
  "$@" > "$out/$name.log" 2>&1
  echo "$?" > "$out/$name.rc"
  python3 -c "import sys; print(round(float(sys.argv[2]) - float(sys.argv[1]), 2))" "$t0" "$(date +%s.%N)" \
      > "$out/$name.sec"
}
finished() { [ "$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['status'])" \
    "$1/run_status.json" 2>/dev/null)" = finished ]; }
# Byte-compiled modules written once and reused: the lent GPU machines set PYTHONDONTWRITEBYTECODE=1
# and their site-packages has no __pycache__, so every new process compiled torch's sources again
# (cProfile of a whole run: 12 s in builtins.compile; importing torch and fertrain's engine took
# 25-30 s there). An installed environment has its bytecode; this gives the benchmarks the same.
unset PYTHONDONTWRITEBYTECODE
export PYTHONPYCACHEPREFIX=${PYTHONPYCACHEPREFIX:-/tmp/fertrain-pycache}
