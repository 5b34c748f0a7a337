# Sourced by the compatibility shims (ktbackup.sh, keytrustee-orgtool,
# ktadmin): sets $kt to the kt binary: $KT, else `kt` on PATH, else the one
# built next to this script; exits 3 (kt's "environment" code) when none.
# $shim names the calling shim in the error.
kt="${KT:-}"
if [ -z "$kt" ]; then
    if command -v kt >/dev/null 2>&1; then
        kt="$(command -v kt)"
    else
        _here="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
        for _candidate in "$_here/target/release/kt" "$_here/target/debug/kt"; do
            if [ -x "$_candidate" ]; then kt="$_candidate"; break; fi
        done
    fi
fi
if [ -z "$kt" ]; then
    echo "${shim:-kt shim}: error: kt not found (set KT=/path/to/kt)" >&2
    exit 3
fi
