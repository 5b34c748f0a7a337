# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_kt_global_optspecs
    string join \n c/confdir= q/quiet v/verbose no-progress h/help V/version
end

function __fish_kt_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_kt_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_kt_using_subcommand
    set -l cmd (__fish_kt_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c kt -n "__fish_kt_needs_command" -s c -l confdir -d 'The instance\'s configuration directory' -r -F
complete -c kt -n "__fish_kt_needs_command" -s q -l quiet -d 'Print nothing but data and errors'
complete -c kt -n "__fish_kt_needs_command" -s v -l verbose -d 'Print more about what kt does'
complete -c kt -n "__fish_kt_needs_command" -l no-progress -d 'Never show progress bars, even on a terminal'
complete -c kt -n "__fish_kt_needs_command" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c kt -n "__fish_kt_needs_command" -s V -l version -d 'Print version'
complete -c kt -n "__fish_kt_needs_command" -f -a "init" -d 'Create a new instance: configuration, keys, certificate and database'
complete -c kt -n "__fish_kt_needs_command" -f -a "db" -d 'Control the instance\'s PostgreSQL database'
complete -c kt -n "__fish_kt_needs_command" -f -a "fingerprint" -d 'Print the server\'s OpenPGP key fingerprint, as `/?a=fingerprint` answers'
complete -c kt -n "__fish_kt_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c kt -n "__fish_kt_using_subcommand init" -l hostname -d 'The server\'s host name, in its TLS certificate and configuration' -r
complete -c kt -n "__fish_kt_using_subcommand init" -l listen -d 'The address and port the key server listens on' -r
complete -c kt -n "__fish_kt_using_subcommand init" -l database-port -d 'The TCP port of the instance\'s PostgreSQL (on 127.0.0.1)' -r
complete -c kt -n "__fish_kt_using_subcommand init" -l pg-rootdir -d 'The PostgreSQL data directory. Defaults to <home>/db' -r -F
complete -c kt -n "__fish_kt_using_subcommand init" -l service-user -d 'The account PostgreSQL runs as when kt runs as root' -r
complete -c kt -n "__fish_kt_using_subcommand init" -l key-type -d 'The kind of server OpenPGP key to generate' -r -f -a "rsa4096\t'RSA 4096 with an RSA 4096 encryption subkey'
ed25519\t'Ed25519 with a Curve25519 encryption subkey'"
complete -c kt -n "__fish_kt_using_subcommand init" -l cert-days -d 'Days the self-signed TLS certificate is valid' -r
complete -c kt -n "__fish_kt_using_subcommand init" -l san -d 'An extra DNS name or IP address for the TLS certificate (repeatable)' -r
complete -c kt -n "__fish_kt_using_subcommand init" -s c -l confdir -d 'The instance\'s configuration directory' -r -F
complete -c kt -n "__fish_kt_using_subcommand init" -s q -l quiet -d 'Print nothing but data and errors'
complete -c kt -n "__fish_kt_using_subcommand init" -s v -l verbose -d 'Print more about what kt does'
complete -c kt -n "__fish_kt_using_subcommand init" -l no-progress -d 'Never show progress bars, even on a terminal'
complete -c kt -n "__fish_kt_using_subcommand init" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c kt -n "__fish_kt_using_subcommand init" -s V -l version -d 'Print version'
complete -c kt -n "__fish_kt_using_subcommand db; and not __fish_seen_subcommand_from start stop status help" -s c -l confdir -d 'The instance\'s configuration directory' -r -F
complete -c kt -n "__fish_kt_using_subcommand db; and not __fish_seen_subcommand_from start stop status help" -s q -l quiet -d 'Print nothing but data and errors'
complete -c kt -n "__fish_kt_using_subcommand db; and not __fish_seen_subcommand_from start stop status help" -s v -l verbose -d 'Print more about what kt does'
complete -c kt -n "__fish_kt_using_subcommand db; and not __fish_seen_subcommand_from start stop status help" -l no-progress -d 'Never show progress bars, even on a terminal'
complete -c kt -n "__fish_kt_using_subcommand db; and not __fish_seen_subcommand_from start stop status help" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c kt -n "__fish_kt_using_subcommand db; and not __fish_seen_subcommand_from start stop status help" -s V -l version -d 'Print version'
complete -c kt -n "__fish_kt_using_subcommand db; and not __fish_seen_subcommand_from start stop status help" -f -a "start" -d 'Start the database in the background and wait until it accepts connections'
complete -c kt -n "__fish_kt_using_subcommand db; and not __fish_seen_subcommand_from start stop status help" -f -a "stop" -d 'Stop the database (fast shutdown) and wait until it is down'
complete -c kt -n "__fish_kt_using_subcommand db; and not __fish_seen_subcommand_from start stop status help" -f -a "status" -d 'Show whether the database runs, with its pid, port and data directory'
complete -c kt -n "__fish_kt_using_subcommand db; and not __fish_seen_subcommand_from start stop status help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c kt -n "__fish_kt_using_subcommand db; and __fish_seen_subcommand_from start" -s c -l confdir -d 'The instance\'s configuration directory' -r -F
complete -c kt -n "__fish_kt_using_subcommand db; and __fish_seen_subcommand_from start" -s q -l quiet -d 'Print nothing but data and errors'
complete -c kt -n "__fish_kt_using_subcommand db; and __fish_seen_subcommand_from start" -s v -l verbose -d 'Print more about what kt does'
complete -c kt -n "__fish_kt_using_subcommand db; and __fish_seen_subcommand_from start" -l no-progress -d 'Never show progress bars, even on a terminal'
complete -c kt -n "__fish_kt_using_subcommand db; and __fish_seen_subcommand_from start" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c kt -n "__fish_kt_using_subcommand db; and __fish_seen_subcommand_from start" -s V -l version -d 'Print version'
complete -c kt -n "__fish_kt_using_subcommand db; and __fish_seen_subcommand_from stop" -s c -l confdir -d 'The instance\'s configuration directory' -r -F
complete -c kt -n "__fish_kt_using_subcommand db; and __fish_seen_subcommand_from stop" -s q -l quiet -d 'Print nothing but data and errors'
complete -c kt -n "__fish_kt_using_subcommand db; and __fish_seen_subcommand_from stop" -s v -l verbose -d 'Print more about what kt does'
complete -c kt -n "__fish_kt_using_subcommand db; and __fish_seen_subcommand_from stop" -l no-progress -d 'Never show progress bars, even on a terminal'
complete -c kt -n "__fish_kt_using_subcommand db; and __fish_seen_subcommand_from stop" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c kt -n "__fish_kt_using_subcommand db; and __fish_seen_subcommand_from stop" -s V -l version -d 'Print version'
complete -c kt -n "__fish_kt_using_subcommand db; and __fish_seen_subcommand_from status" -s c -l confdir -d 'The instance\'s configuration directory' -r -F
complete -c kt -n "__fish_kt_using_subcommand db; and __fish_seen_subcommand_from status" -l json -d 'Print the status as a JSON object'
complete -c kt -n "__fish_kt_using_subcommand db; and __fish_seen_subcommand_from status" -s q -l quiet -d 'Print nothing but data and errors'
complete -c kt -n "__fish_kt_using_subcommand db; and __fish_seen_subcommand_from status" -s v -l verbose -d 'Print more about what kt does'
complete -c kt -n "__fish_kt_using_subcommand db; and __fish_seen_subcommand_from status" -l no-progress -d 'Never show progress bars, even on a terminal'
complete -c kt -n "__fish_kt_using_subcommand db; and __fish_seen_subcommand_from status" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c kt -n "__fish_kt_using_subcommand db; and __fish_seen_subcommand_from status" -s V -l version -d 'Print version'
complete -c kt -n "__fish_kt_using_subcommand db; and __fish_seen_subcommand_from help" -f -a "start" -d 'Start the database in the background and wait until it accepts connections'
complete -c kt -n "__fish_kt_using_subcommand db; and __fish_seen_subcommand_from help" -f -a "stop" -d 'Stop the database (fast shutdown) and wait until it is down'
complete -c kt -n "__fish_kt_using_subcommand db; and __fish_seen_subcommand_from help" -f -a "status" -d 'Show whether the database runs, with its pid, port and data directory'
complete -c kt -n "__fish_kt_using_subcommand db; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c kt -n "__fish_kt_using_subcommand fingerprint" -s c -l confdir -d 'The instance\'s configuration directory' -r -F
complete -c kt -n "__fish_kt_using_subcommand fingerprint" -s q -l quiet -d 'Print nothing but data and errors'
complete -c kt -n "__fish_kt_using_subcommand fingerprint" -s v -l verbose -d 'Print more about what kt does'
complete -c kt -n "__fish_kt_using_subcommand fingerprint" -l no-progress -d 'Never show progress bars, even on a terminal'
complete -c kt -n "__fish_kt_using_subcommand fingerprint" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c kt -n "__fish_kt_using_subcommand fingerprint" -s V -l version -d 'Print version'
complete -c kt -n "__fish_kt_using_subcommand help; and not __fish_seen_subcommand_from init db fingerprint help" -f -a "init" -d 'Create a new instance: configuration, keys, certificate and database'
complete -c kt -n "__fish_kt_using_subcommand help; and not __fish_seen_subcommand_from init db fingerprint help" -f -a "db" -d 'Control the instance\'s PostgreSQL database'
complete -c kt -n "__fish_kt_using_subcommand help; and not __fish_seen_subcommand_from init db fingerprint help" -f -a "fingerprint" -d 'Print the server\'s OpenPGP key fingerprint, as `/?a=fingerprint` answers'
complete -c kt -n "__fish_kt_using_subcommand help; and not __fish_seen_subcommand_from init db fingerprint help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c kt -n "__fish_kt_using_subcommand help; and __fish_seen_subcommand_from db" -f -a "start" -d 'Start the database in the background and wait until it accepts connections'
complete -c kt -n "__fish_kt_using_subcommand help; and __fish_seen_subcommand_from db" -f -a "stop" -d 'Stop the database (fast shutdown) and wait until it is down'
complete -c kt -n "__fish_kt_using_subcommand help; and __fish_seen_subcommand_from db" -f -a "status" -d 'Show whether the database runs, with its pid, port and data directory'
