#!/usr/bin/env bash
# Compatibility shim for the documented ktbackup.sh: existing crontabs such as
#
#   ktbackup.sh -c /var/lib/keytrustee/.keytrustee --database-port=11381 \
#       --gpg-recipient='John Doe' --output=/var/backups/kt --roll=10 --quiet
#
# keep working: every documented option is passed on to `kt backup`, which
# takes the same spellings (-c/--confdir, --database-port, --gpg-recipient,
# --cleartext, --output, --roll, -q/--quiet, --verbose). The kt binary is
# $KT, else `kt` on PATH, else the one built next to this script
# (scripts/lib/find-kt.sh). The documented ktbackup.sh took -c CONFDIR (as
# kt does); ktadmin and keytrustee-orgtool took --confdir.
set -euo pipefail
shim=ktbackup.sh
here="$(dirname "$(readlink -f "$0")")"
# shellcheck source=lib/find-kt.sh
source "$here/lib/find-kt.sh"
# shellcheck source=lib/shim-args.sh
source "$here/lib/shim-args.sh"
args=()
while [ "$#" -gt 0 ]; do
    case "$1" in
        -h|--help)
            echo "usage: ktbackup.sh [-c CONFDIR] [--database-port=PORT] [--gpg-recipient=RECIPIENT]... [--cleartext] [--output=DIR] [--roll=N] [-q|--quiet] [--verbose]"
            exit 0 ;;
        # The documented short form of the confdir takes a separate value.
        -c) need_value "$@"; args+=("--confdir" "$2"); shift 2 ;;
        *) args+=("$1"); shift ;;
    esac
done
exec "$kt" backup ${args[@]+"${args[@]}"}
