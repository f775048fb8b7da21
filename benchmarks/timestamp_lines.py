"""Copy stdin to stdout with each line prefixed by the seconds since this process started
(a whole command's timeline: `python3 -u -m fertrain teacher ... 2>&1 | python3 benchmarks/timestamp_lines.py`)."""

import sys
import time

start = time.perf_counter()
for line in sys.stdin:
    sys.stdout.write(f"{time.perf_counter() - start:8.2f} {line}")
    sys.stdout.flush()
