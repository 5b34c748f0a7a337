#!/usr/bin/env python3
"""Runs one shell command and prints `wall_seconds max_rss_kib` on stdout.

The peak RSS is the largest of the command's processes (RUSAGE_CHILDREN),
so a pipeline is charged for its biggest member, kt for itself. Used by the
benchmark scripts so that every contender is measured the same way. With
MEASURE_CPU=1 a third field follows: the CPU seconds (user + system) of
all the command's processes, the figure that survives a machine shared
with other jobs better than wall time."""
import os
import resource, subprocess, sys, time

start = time.monotonic()
rc = subprocess.call(["bash", "-c", sys.argv[1]])
wall = time.monotonic() - start
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
if os.environ.get("MEASURE_CPU") == "1":
    print(f"{wall:.2f} {usage.ru_maxrss} {usage.ru_utime + usage.ru_stime:.2f}")
else:
    print(f"{wall:.2f} {usage.ru_maxrss}")
sys.exit(rc)
