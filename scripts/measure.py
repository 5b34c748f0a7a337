#!/usr/bin/env python3
"""Runs one shell command and prints `wall_seconds max_rss_kib` on stdout.

The peak RSS is the largest of the command's processes (RUSAGE_CHILDREN),
so a pipeline is charged for its biggest member, kt for itself. Used by the
benchmark scripts so that every contender is measured the same way."""
import resource, subprocess, sys, time

start = time.monotonic()
rc = subprocess.call(["bash", "-c", sys.argv[1]])
wall = time.monotonic() - start
rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print(f"{wall:.2f} {rss}")
sys.exit(rc)
