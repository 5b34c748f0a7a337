#!/usr/bin/env bash
# Compatibility shim for the documented ktbackup.sh: existing crontabs such as
#
#   ktbackup.sh -c /var/lib/keytrustee/.keytrustee --database-port=11381 \
#       --gpg-recipient='John Doe' --output=/var/backups/kt --roll=10 --quiet
#
# keep working: every documented option is passed on to `kt backup`, which
# takes the same spellings (-c/--confdir, --database-port, --gpg-recipient,
# --cleartext, --output, --roll, -q/--quiet, --verbose). The kt binary is
# $KT, else `kt` on PATH, else the one built next to this script.
set -euo pipefail
kt="${KT:-}"
if [ -z "$kt" ]; then
    if command -v kt >/dev/null 2>&1; then
        kt="$(command -v kt)"
    else
        here="$(cd "$(dirname "$0")/.." && pwd)"
        for candidate in "$here/target/release/kt" "$here/target/debug/kt"; do
            if [ -x "$candidate" ]; then kt="$candidate"; break; fi
        done
    fi
fi
if [ -z "$kt" ]; then
    echo "ktbackup.sh: error: kt not found (set KT=/path/to/kt)" >&2
    exit 3
fi
args=()
while [ "$#" -gt 0 ]; do
    case "$1" in
        -h|--help)
            echo "usage: ktbackup.sh [-c CONFDIR] [--database-port=PORT] [--gpg-recipient=RECIPIENT]... [--cleartext] [--output=DIR] [--roll=N] [-q|--quiet] [--verbose]"
            exit 0 ;;
        # The documented short form of the confdir takes a separate value.
        -c) args+=("--confdir" "$2"); shift 2 ;;
        *) args+=("$1"); shift ;;
    esac
done
exec "$kt" backup "${args[@]}"
