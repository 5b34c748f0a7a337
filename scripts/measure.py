#!/usr/bin/env python3
"""Runs one shell command and prints `wall_seconds max_rss_kib` on stdout
(with `--cpu` first: `wall_seconds max_rss_kib cpu_seconds`).

The peak RSS is the largest of the command's processes (RUSAGE_CHILDREN),
so a pipeline is charged for its biggest member, kt for itself. The CPU
time (user + system) is that of the command and the processes it waited
for (kt and its pg_dump, say), not of servers it talked to (PostgreSQL's
backend). Used by the benchmark scripts so that every contender is
measured the same way. The CPU figure survives a machine shared with
other jobs better than wall time."""
import resource, subprocess, sys, time

args = sys.argv[1:]
cpu = args[:1] == ["--cpu"]
if cpu:
    args = args[1:]
start = time.monotonic()
rc = subprocess.call(["bash", "-c", args[0]])
wall = time.monotonic() - start
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
if cpu:
    print(f"{wall:.2f} {usage.ru_maxrss} {usage.ru_utime + usage.ru_stime:.2f}")
else:
    print(f"{wall:.2f} {usage.ru_maxrss}")
sys.exit(rc)
