# Sourced by the compatibility shims: the option handling they share, so a
# missing value is refused the same way everywhere (exit 2, kt's "usage"
# code, naming the option) instead of bash's "$2: unbound variable".
# $shim names the calling shim in the errors.
#
# Bash 4.2 (still the system bash of some long-lived servers) treats an
# empty array as unset under `set -u`: expand arrays that may be empty as
# ${name[@]+"${name[@]}"}.

# need_value "$@": exits 2 unless the option in $1 has a value in $2:
# called as `need_value "$@"` where the option is "$1", or as
# `need_value --opt "${1#--opt=}"` for the `--opt=VALUE` spelling. A value
# that looks like an option (`--confdir --status`) is a missing value: the
# documented command lines never give such a directory.
need_value() {
    if [ "$#" -lt 2 ] || [ -z "$2" ] || [ "${2#-}" != "$2" ]; then
        echo "$shim: error: $1 needs a value" >&2
        exit 2
    fi
}

# shim_confdir "$@": reads the leading confdir options, in kt's spellings
# (`--confdir DIR`, `--confdir=DIR`, `-c DIR`), into the array `global`,
# and sets `shim_used` to how many arguments they took (the caller then
# runs `shift "$shim_used"`). It stops at the first other argument.
shim_confdir() {
    global=()
    shim_used=0
    while [ "$#" -gt 0 ]; do
        case "$1" in
            --confdir | -c)
                need_value "$@"
                global+=(--confdir "$2")
                shift 2
                shim_used=$((shim_used + 2)) ;;
            --confdir=*)
                need_value --confdir "${1#--confdir=}"
                global+=("$1")
                shift
                shim_used=$((shim_used + 1)) ;;
            *) break ;;
        esac
    done
}
