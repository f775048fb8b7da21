# Sourced by the device scripts: `timed NAME CMD...` runs CMD with its output in $out/NAME.log,
# its exit status in $out/NAME.rc and its whole wall time in seconds in $out/NAME.sec.
timed() {
  local name=$1; shift
  local t0; t0=$(date +%s.%N)
  "$@" > "$out/$name.log" 2>&1
  echo "$?" > "$out/$name.rc"
  python3 -c "import sys; print(round(float(sys.argv[2]) - float(sys.argv[1]), 2))" "$t0" "$(date +%s.%N)" \
      > "$out/$name.sec"
}
# Byte-compiled modules cached outside the Python installation: on the lent GPU machines every new
# process compiled torch's sources again (~12 s per command, cProfile: builtins.compile), which an
# installed environment with __pycache__ folders does not pay.
export PYTHONPYCACHEPREFIX=${PYTHONPYCACHEPREFIX:-/tmp/fertrain-pycache}
