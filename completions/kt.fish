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
complete -c kt -n "__fish_kt_needs_command" -f -a "serve" -d 'Run the key server in the foreground (HTTPS, port 11371 by default)'
complete -c kt -n "__fish_kt_needs_command" -f -a "server" -d 'Run the key server in the background, like an init script'
complete -c kt -n "__fish_kt_needs_command" -f -a "org" -d 'Manage organizations and their clients (the documented keytrustee-orgtool)'
complete -c kt -n "__fish_kt_needs_command" -f -a "client" -d 'A reference client of the key server: register, then store, fetch, list and delete deposits'
complete -c kt -n "__fish_kt_needs_command" -f -a "backup" -d 'Back up the confdir and the database into one encrypted archive'
complete -c kt -n "__fish_kt_needs_command" -f -a "verify" -d 'Check that the key server and its backups are sound (read-only)'
complete -c kt -n "__fish_kt_needs_command" -f -a "restore" -d 'Restore a backup: the confdir and the database, safely'
complete -c kt -n "__fish_kt_needs_command" -f -a "cert" -d 'Generate, replace, show and check the server\'s TLS certificate'
complete -c kt -n "__fish_kt_needs_command" -f -a "ha" -d 'High availability: an active and a passive server, PostgreSQL streaming replication between them'
complete -c kt -n "__fish_kt_needs_command" -f -a "schedule" -d 'Schedule backups: checked cron entries, their next runs, a foreground runner for hosts without cron, and systemd timers'
complete -c kt -n "__fish_kt_needs_command" -f -a "mail" -d 'Contact mail: the outbox and the MTA'
complete -c kt -n "__fish_kt_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c kt -n "__fish_kt_using_subcommand init" -l hostname -d 'The server\'s host name, in its TLS certificate and configuration' -r
complete -c kt -n "__fish_kt_using_subcommand init" -l listen -d 'The address and port the key server listens on' -r
complete -c kt -n "__fish_kt_using_subcommand init" -l database-port -d 'The TCP port of the instance\'s PostgreSQL (on 127.0.0.1)' -r
complete -c kt -n "__fish_kt_using_subcommand init" -l pg-rootdir -d 'The PostgreSQL data directory. Defaults to <home>/db' -r -F
complete -c kt -n "__fish_kt_using_subcommand init" -l db-host -d 'The external database server\'s host name or address' -r
complete -c kt -n "__fish_kt_using_subcommand init" -l db-port -d 'The external database server\'s port' -r
complete -c kt -n "__fish_kt_using_subcommand init" -l db-name -d 'The database kt uses on the external server' -r
complete -c kt -n "__fish_kt_using_subcommand init" -l db-user -d 'The role kt logs in as (no superuser)' -r
complete -c kt -n "__fish_kt_using_subcommand init" -l db-sslmode -d 'How the connection is protected, with libpq\'s meanings' -r -f -a "disable\t''
prefer\t''
require\t''
verify-ca\t''
verify-full\t''"
complete -c kt -n "__fish_kt_using_subcommand init" -l db-sslrootcert -d 'The CA certificate(s) of the database server\'s certificate (PEM); copied into the confdir' -r -F
complete -c kt -n "__fish_kt_using_subcommand init" -l db-channel-binding -d 'Whether SCRAM login is bound to the TLS session, with libpq\'s meanings' -r -f -a "prefer\t''
require\t''
disable\t''"
complete -c kt -n "__fish_kt_using_subcommand init" -l db-password-file -d 'A file whose first line is the role\'s password; - reads standard input. Stored in the confdir\'s .pgpass (0600), never in argv or the configuration' -r -F
complete -c kt -n "__fish_kt_using_subcommand init" -l service-user -d 'The account PostgreSQL runs as when kt runs as root' -r
complete -c kt -n "__fish_kt_using_subcommand init" -l key-type -d 'The kind of server OpenPGP key to generate' -r -f -a "rsa4096\t'RSA 4096 with an RSA 4096 encryption subkey'
ed25519\t'Ed25519 with a Curve25519 encryption subkey'"
complete -c kt -n "__fish_kt_using_subcommand init" -l cert-days -d 'Days the self-signed TLS certificate is valid' -r
complete -c kt -n "__fish_kt_using_subcommand init" -l san -d 'An extra DNS name or IP address for the TLS certificate (repeatable)' -r
complete -c kt -n "__fish_kt_using_subcommand init" -s c -l confdir -d 'The instance\'s configuration directory' -r -F
complete -c kt -n "__fish_kt_using_subcommand init" -l external-db -d 'Keep the database on an existing PostgreSQL server instead of a cluster of the instance\'s own'
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
complete -c kt -n "__fish_kt_using_subcommand db; and __fish_seen_subcommand_from start" -l wait-for-active -d 'On an HA passive: how long to wait for the active\'s database first' -r
complete -c kt -n "__fish_kt_using_subcommand db; and __fish_seen_subcommand_from start" -l pg-rootdir -d 'The database directory, as the documented `ktadmin db` takes it: refused unless it is the instance\'s PG_ROOTDIR' -r -F
complete -c kt -n "__fish_kt_using_subcommand db; and __fish_seen_subcommand_from start" -s c -l confdir -d 'The instance\'s configuration directory' -r -F
complete -c kt -n "__fish_kt_using_subcommand db; and __fish_seen_subcommand_from start" -s q -l quiet -d 'Print nothing but data and errors'
complete -c kt -n "__fish_kt_using_subcommand db; and __fish_seen_subcommand_from start" -s v -l verbose -d 'Print more about what kt does'
complete -c kt -n "__fish_kt_using_subcommand db; and __fish_seen_subcommand_from start" -l no-progress -d 'Never show progress bars, even on a terminal'
complete -c kt -n "__fish_kt_using_subcommand db; and __fish_seen_subcommand_from start" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c kt -n "__fish_kt_using_subcommand db; and __fish_seen_subcommand_from start" -s V -l version -d 'Print version'
complete -c kt -n "__fish_kt_using_subcommand db; and __fish_seen_subcommand_from stop" -l pg-rootdir -d 'The database directory, as the documented `ktadmin db` takes it: refused unless it is the instance\'s PG_ROOTDIR' -r -F
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
complete -c kt -n "__fish_kt_using_subcommand serve" -s c -l confdir -d 'The instance\'s configuration directory' -r -F
complete -c kt -n "__fish_kt_using_subcommand serve" -s q -l quiet -d 'Print nothing but data and errors'
complete -c kt -n "__fish_kt_using_subcommand serve" -s v -l verbose -d 'Print more about what kt does'
complete -c kt -n "__fish_kt_using_subcommand serve" -l no-progress -d 'Never show progress bars, even on a terminal'
complete -c kt -n "__fish_kt_using_subcommand serve" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c kt -n "__fish_kt_using_subcommand serve" -s V -l version -d 'Print version'
complete -c kt -n "__fish_kt_using_subcommand server; and not __fish_seen_subcommand_from start stop restart reload status help" -s c -l confdir -d 'The instance\'s configuration directory' -r -F
complete -c kt -n "__fish_kt_using_subcommand server; and not __fish_seen_subcommand_from start stop restart reload status help" -s q -l quiet -d 'Print nothing but data and errors'
complete -c kt -n "__fish_kt_using_subcommand server; and not __fish_seen_subcommand_from start stop restart reload status help" -s v -l verbose -d 'Print more about what kt does'
complete -c kt -n "__fish_kt_using_subcommand server; and not __fish_seen_subcommand_from start stop restart reload status help" -l no-progress -d 'Never show progress bars, even on a terminal'
complete -c kt -n "__fish_kt_using_subcommand server; and not __fish_seen_subcommand_from start stop restart reload status help" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c kt -n "__fish_kt_using_subcommand server; and not __fish_seen_subcommand_from start stop restart reload status help" -s V -l version -d 'Print version'
complete -c kt -n "__fish_kt_using_subcommand server; and not __fish_seen_subcommand_from start stop restart reload status help" -f -a "start" -d 'Start the server and wait until it answers over HTTPS'
complete -c kt -n "__fish_kt_using_subcommand server; and not __fish_seen_subcommand_from start stop restart reload status help" -f -a "stop" -d 'Stop the server gracefully (SIGTERM) and wait until it has exited'
complete -c kt -n "__fish_kt_using_subcommand server; and not __fish_seen_subcommand_from start stop restart reload status help" -f -a "restart" -d 'Stop the server, then start it again'
complete -c kt -n "__fish_kt_using_subcommand server; and not __fish_seen_subcommand_from start stop restart reload status help" -f -a "reload" -d 'Reload the certificate, key and CA (SIGHUP) without a restart'
complete -c kt -n "__fish_kt_using_subcommand server; and not __fish_seen_subcommand_from start stop restart reload status help" -f -a "status" -d 'Show whether the server runs; exits 1 when it does not'
complete -c kt -n "__fish_kt_using_subcommand server; and not __fish_seen_subcommand_from start stop restart reload status help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c kt -n "__fish_kt_using_subcommand server; and __fish_seen_subcommand_from start" -s c -l confdir -d 'The instance\'s configuration directory' -r -F
complete -c kt -n "__fish_kt_using_subcommand server; and __fish_seen_subcommand_from start" -s q -l quiet -d 'Print nothing but data and errors'
complete -c kt -n "__fish_kt_using_subcommand server; and __fish_seen_subcommand_from start" -s v -l verbose -d 'Print more about what kt does'
complete -c kt -n "__fish_kt_using_subcommand server; and __fish_seen_subcommand_from start" -l no-progress -d 'Never show progress bars, even on a terminal'
complete -c kt -n "__fish_kt_using_subcommand server; and __fish_seen_subcommand_from start" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c kt -n "__fish_kt_using_subcommand server; and __fish_seen_subcommand_from start" -s V -l version -d 'Print version'
complete -c kt -n "__fish_kt_using_subcommand server; and __fish_seen_subcommand_from stop" -s c -l confdir -d 'The instance\'s configuration directory' -r -F
complete -c kt -n "__fish_kt_using_subcommand server; and __fish_seen_subcommand_from stop" -s q -l quiet -d 'Print nothing but data and errors'
complete -c kt -n "__fish_kt_using_subcommand server; and __fish_seen_subcommand_from stop" -s v -l verbose -d 'Print more about what kt does'
complete -c kt -n "__fish_kt_using_subcommand server; and __fish_seen_subcommand_from stop" -l no-progress -d 'Never show progress bars, even on a terminal'
complete -c kt -n "__fish_kt_using_subcommand server; and __fish_seen_subcommand_from stop" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c kt -n "__fish_kt_using_subcommand server; and __fish_seen_subcommand_from stop" -s V -l version -d 'Print version'
complete -c kt -n "__fish_kt_using_subcommand server; and __fish_seen_subcommand_from restart" -s c -l confdir -d 'The instance\'s configuration directory' -r -F
complete -c kt -n "__fish_kt_using_subcommand server; and __fish_seen_subcommand_from restart" -s q -l quiet -d 'Print nothing but data and errors'
complete -c kt -n "__fish_kt_using_subcommand server; and __fish_seen_subcommand_from restart" -s v -l verbose -d 'Print more about what kt does'
complete -c kt -n "__fish_kt_using_subcommand server; and __fish_seen_subcommand_from restart" -l no-progress -d 'Never show progress bars, even on a terminal'
complete -c kt -n "__fish_kt_using_subcommand server; and __fish_seen_subcommand_from restart" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c kt -n "__fish_kt_using_subcommand server; and __fish_seen_subcommand_from restart" -s V -l version -d 'Print version'
complete -c kt -n "__fish_kt_using_subcommand server; and __fish_seen_subcommand_from reload" -s c -l confdir -d 'The instance\'s configuration directory' -r -F
complete -c kt -n "__fish_kt_using_subcommand server; and __fish_seen_subcommand_from reload" -s q -l quiet -d 'Print nothing but data and errors'
complete -c kt -n "__fish_kt_using_subcommand server; and __fish_seen_subcommand_from reload" -s v -l verbose -d 'Print more about what kt does'
complete -c kt -n "__fish_kt_using_subcommand server; and __fish_seen_subcommand_from reload" -l no-progress -d 'Never show progress bars, even on a terminal'
complete -c kt -n "__fish_kt_using_subcommand server; and __fish_seen_subcommand_from reload" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c kt -n "__fish_kt_using_subcommand server; and __fish_seen_subcommand_from reload" -s V -l version -d 'Print version'
complete -c kt -n "__fish_kt_using_subcommand server; and __fish_seen_subcommand_from status" -s c -l confdir -d 'The instance\'s configuration directory' -r -F
complete -c kt -n "__fish_kt_using_subcommand server; and __fish_seen_subcommand_from status" -s q -l quiet -d 'Print nothing but data and errors'
complete -c kt -n "__fish_kt_using_subcommand server; and __fish_seen_subcommand_from status" -s v -l verbose -d 'Print more about what kt does'
complete -c kt -n "__fish_kt_using_subcommand server; and __fish_seen_subcommand_from status" -l no-progress -d 'Never show progress bars, even on a terminal'
complete -c kt -n "__fish_kt_using_subcommand server; and __fish_seen_subcommand_from status" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c kt -n "__fish_kt_using_subcommand server; and __fish_seen_subcommand_from status" -s V -l version -d 'Print version'
complete -c kt -n "__fish_kt_using_subcommand server; and __fish_seen_subcommand_from help" -f -a "start" -d 'Start the server and wait until it answers over HTTPS'
complete -c kt -n "__fish_kt_using_subcommand server; and __fish_seen_subcommand_from help" -f -a "stop" -d 'Stop the server gracefully (SIGTERM) and wait until it has exited'
complete -c kt -n "__fish_kt_using_subcommand server; and __fish_seen_subcommand_from help" -f -a "restart" -d 'Stop the server, then start it again'
complete -c kt -n "__fish_kt_using_subcommand server; and __fish_seen_subcommand_from help" -f -a "reload" -d 'Reload the certificate, key and CA (SIGHUP) without a restart'
complete -c kt -n "__fish_kt_using_subcommand server; and __fish_seen_subcommand_from help" -f -a "status" -d 'Show whether the server runs; exits 1 when it does not'
complete -c kt -n "__fish_kt_using_subcommand server; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c kt -n "__fish_kt_using_subcommand org; and not __fish_seen_subcommand_from add invite list set-auth enable-client deny-client disable-client clients help" -s c -l confdir -d 'The instance\'s configuration directory' -r -F
complete -c kt -n "__fish_kt_using_subcommand org; and not __fish_seen_subcommand_from add invite list set-auth enable-client deny-client disable-client clients help" -s q -l quiet -d 'Print nothing but data and errors'
complete -c kt -n "__fish_kt_using_subcommand org; and not __fish_seen_subcommand_from add invite list set-auth enable-client deny-client disable-client clients help" -s v -l verbose -d 'Print more about what kt does'
complete -c kt -n "__fish_kt_using_subcommand org; and not __fish_seen_subcommand_from add invite list set-auth enable-client deny-client disable-client clients help" -l no-progress -d 'Never show progress bars, even on a terminal'
complete -c kt -n "__fish_kt_using_subcommand org; and not __fish_seen_subcommand_from add invite list set-auth enable-client deny-client disable-client clients help" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c kt -n "__fish_kt_using_subcommand org; and not __fish_seen_subcommand_from add invite list set-auth enable-client deny-client disable-client clients help" -s V -l version -d 'Print version'
complete -c kt -n "__fish_kt_using_subcommand org; and not __fish_seen_subcommand_from add invite list set-auth enable-client deny-client disable-client clients help" -f -a "add" -d 'Add an organization with a random auth secret, or add contacts to an existing one'
complete -c kt -n "__fish_kt_using_subcommand org; and not __fish_seen_subcommand_from add invite list set-auth enable-client deny-client disable-client clients help" -f -a "invite" -d 'Mail contacts of an organization a new registration link (theirs expired, was used, or never arrived); their older unused links stop working'
complete -c kt -n "__fish_kt_using_subcommand org; and not __fish_seen_subcommand_from add invite list set-auth enable-client deny-client disable-client clients help" -f -a "list" -d 'Print every organization as JSON (auth_secret, contacts, creation, expiration, key_info, name, state, uuid), keyed by name'
complete -c kt -n "__fish_kt_using_subcommand org; and not __fish_seen_subcommand_from add invite list set-auth enable-client deny-client disable-client clients help" -f -a "set-auth" -d 'Set an organization\'s auth secret; an empty secret (-s "") approves every new client automatically'
complete -c kt -n "__fish_kt_using_subcommand org; and not __fish_seen_subcommand_from add invite list set-auth enable-client deny-client disable-client clients help" -f -a "enable-client" -d 'Approve a client that awaits approval, or allow a disabled client to act again'
complete -c kt -n "__fish_kt_using_subcommand org; and not __fish_seen_subcommand_from add invite list set-auth enable-client deny-client disable-client clients help" -f -a "deny-client" -d 'Refuse a client that awaits approval: its registration is removed (it may ask again later)'
complete -c kt -n "__fish_kt_using_subcommand org; and not __fish_seen_subcommand_from add invite list set-auth enable-client deny-client disable-client clients help" -f -a "disable-client" -d 'Refuse every further request of a client'
complete -c kt -n "__fish_kt_using_subcommand org; and not __fish_seen_subcommand_from add invite list set-auth enable-client deny-client disable-client clients help" -f -a "clients" -d 'Print the clients (of one organization, or all) as JSON, with their state (active, disabled, pending), the host name each gave (claimed_host: the client\'s claim, not verified) and registration time'
complete -c kt -n "__fish_kt_using_subcommand org; and not __fish_seen_subcommand_from add invite list set-auth enable-client deny-client disable-client clients help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c kt -n "__fish_kt_using_subcommand org; and __fish_seen_subcommand_from add" -s n -l name -d 'The organization\'s name: letters, digits, \'.\', \'_\', \'-\'' -r
complete -c kt -n "__fish_kt_using_subcommand org; and __fish_seen_subcommand_from add" -s c -l contacts -d 'Contact addresses, separated by commas' -r
complete -c kt -n "__fish_kt_using_subcommand org; and __fish_seen_subcommand_from add" -l confdir -d 'The instance\'s configuration directory (long form only here)' -r -F
complete -c kt -n "__fish_kt_using_subcommand org; and __fish_seen_subcommand_from add" -s q -l quiet -d 'Print nothing but data and errors'
complete -c kt -n "__fish_kt_using_subcommand org; and __fish_seen_subcommand_from add" -s v -l verbose -d 'Print more about what kt does'
complete -c kt -n "__fish_kt_using_subcommand org; and __fish_seen_subcommand_from add" -l no-progress -d 'Never show progress bars, even on a terminal'
complete -c kt -n "__fish_kt_using_subcommand org; and __fish_seen_subcommand_from add" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c kt -n "__fish_kt_using_subcommand org; and __fish_seen_subcommand_from add" -s V -l version -d 'Print version'
complete -c kt -n "__fish_kt_using_subcommand org; and __fish_seen_subcommand_from invite" -s n -l name -d 'The organization\'s name' -r
complete -c kt -n "__fish_kt_using_subcommand org; and __fish_seen_subcommand_from invite" -s c -l contacts -d 'Contact addresses of the organization, separated by commas' -r
complete -c kt -n "__fish_kt_using_subcommand org; and __fish_seen_subcommand_from invite" -l confdir -d 'The instance\'s configuration directory (long form only here)' -r -F
complete -c kt -n "__fish_kt_using_subcommand org; and __fish_seen_subcommand_from invite" -s q -l quiet -d 'Print nothing but data and errors'
complete -c kt -n "__fish_kt_using_subcommand org; and __fish_seen_subcommand_from invite" -s v -l verbose -d 'Print more about what kt does'
complete -c kt -n "__fish_kt_using_subcommand org; and __fish_seen_subcommand_from invite" -l no-progress -d 'Never show progress bars, even on a terminal'
complete -c kt -n "__fish_kt_using_subcommand org; and __fish_seen_subcommand_from invite" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c kt -n "__fish_kt_using_subcommand org; and __fish_seen_subcommand_from invite" -s V -l version -d 'Print version'
complete -c kt -n "__fish_kt_using_subcommand org; and __fish_seen_subcommand_from list" -s c -l confdir -d 'The instance\'s configuration directory' -r -F
complete -c kt -n "__fish_kt_using_subcommand org; and __fish_seen_subcommand_from list" -l json-extended -d 'Add kt\'s own fields to the documented ones (as --verbose does)'
complete -c kt -n "__fish_kt_using_subcommand org; and __fish_seen_subcommand_from list" -s q -l quiet -d 'Print nothing but data and errors'
complete -c kt -n "__fish_kt_using_subcommand org; and __fish_seen_subcommand_from list" -s v -l verbose -d 'Print more about what kt does'
complete -c kt -n "__fish_kt_using_subcommand org; and __fish_seen_subcommand_from list" -l no-progress -d 'Never show progress bars, even on a terminal'
complete -c kt -n "__fish_kt_using_subcommand org; and __fish_seen_subcommand_from list" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c kt -n "__fish_kt_using_subcommand org; and __fish_seen_subcommand_from list" -s V -l version -d 'Print version'
complete -c kt -n "__fish_kt_using_subcommand org; and __fish_seen_subcommand_from set-auth" -s n -l name -r
complete -c kt -n "__fish_kt_using_subcommand org; and __fish_seen_subcommand_from set-auth" -s s -l secret -d 'The new secret (visible in the process list: prefer --secret-file)' -r
complete -c kt -n "__fish_kt_using_subcommand org; and __fish_seen_subcommand_from set-auth" -l secret-file -d 'Read the secret from this file (its first line)' -r -F
complete -c kt -n "__fish_kt_using_subcommand org; and __fish_seen_subcommand_from set-auth" -s c -l confdir -d 'The instance\'s configuration directory' -r -F
complete -c kt -n "__fish_kt_using_subcommand org; and __fish_seen_subcommand_from set-auth" -s q -l quiet -d 'Print nothing but data and errors'
complete -c kt -n "__fish_kt_using_subcommand org; and __fish_seen_subcommand_from set-auth" -s v -l verbose -d 'Print more about what kt does'
complete -c kt -n "__fish_kt_using_subcommand org; and __fish_seen_subcommand_from set-auth" -l no-progress -d 'Never show progress bars, even on a terminal'
complete -c kt -n "__fish_kt_using_subcommand org; and __fish_seen_subcommand_from set-auth" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c kt -n "__fish_kt_using_subcommand org; and __fish_seen_subcommand_from set-auth" -s V -l version -d 'Print version'
complete -c kt -n "__fish_kt_using_subcommand org; and __fish_seen_subcommand_from enable-client" -l fingerprint -r
complete -c kt -n "__fish_kt_using_subcommand org; and __fish_seen_subcommand_from enable-client" -s c -l confdir -d 'The instance\'s configuration directory' -r -F
complete -c kt -n "__fish_kt_using_subcommand org; and __fish_seen_subcommand_from enable-client" -s q -l quiet -d 'Print nothing but data and errors'
complete -c kt -n "__fish_kt_using_subcommand org; and __fish_seen_subcommand_from enable-client" -s v -l verbose -d 'Print more about what kt does'
complete -c kt -n "__fish_kt_using_subcommand org; and __fish_seen_subcommand_from enable-client" -l no-progress -d 'Never show progress bars, even on a terminal'
complete -c kt -n "__fish_kt_using_subcommand org; and __fish_seen_subcommand_from enable-client" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c kt -n "__fish_kt_using_subcommand org; and __fish_seen_subcommand_from enable-client" -s V -l version -d 'Print version'
complete -c kt -n "__fish_kt_using_subcommand org; and __fish_seen_subcommand_from deny-client" -l fingerprint -r
complete -c kt -n "__fish_kt_using_subcommand org; and __fish_seen_subcommand_from deny-client" -s c -l confdir -d 'The instance\'s configuration directory' -r -F
complete -c kt -n "__fish_kt_using_subcommand org; and __fish_seen_subcommand_from deny-client" -s q -l quiet -d 'Print nothing but data and errors'
complete -c kt -n "__fish_kt_using_subcommand org; and __fish_seen_subcommand_from deny-client" -s v -l verbose -d 'Print more about what kt does'
complete -c kt -n "__fish_kt_using_subcommand org; and __fish_seen_subcommand_from deny-client" -l no-progress -d 'Never show progress bars, even on a terminal'
complete -c kt -n "__fish_kt_using_subcommand org; and __fish_seen_subcommand_from deny-client" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c kt -n "__fish_kt_using_subcommand org; and __fish_seen_subcommand_from deny-client" -s V -l version -d 'Print version'
complete -c kt -n "__fish_kt_using_subcommand org; and __fish_seen_subcommand_from disable-client" -l fingerprint -r
complete -c kt -n "__fish_kt_using_subcommand org; and __fish_seen_subcommand_from disable-client" -s c -l confdir -d 'The instance\'s configuration directory' -r -F
complete -c kt -n "__fish_kt_using_subcommand org; and __fish_seen_subcommand_from disable-client" -s q -l quiet -d 'Print nothing but data and errors'
complete -c kt -n "__fish_kt_using_subcommand org; and __fish_seen_subcommand_from disable-client" -s v -l verbose -d 'Print more about what kt does'
complete -c kt -n "__fish_kt_using_subcommand org; and __fish_seen_subcommand_from disable-client" -l no-progress -d 'Never show progress bars, even on a terminal'
complete -c kt -n "__fish_kt_using_subcommand org; and __fish_seen_subcommand_from disable-client" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c kt -n "__fish_kt_using_subcommand org; and __fish_seen_subcommand_from disable-client" -s V -l version -d 'Print version'
complete -c kt -n "__fish_kt_using_subcommand org; and __fish_seen_subcommand_from clients" -s n -l name -r
complete -c kt -n "__fish_kt_using_subcommand org; and __fish_seen_subcommand_from clients" -s c -l confdir -d 'The instance\'s configuration directory' -r -F
complete -c kt -n "__fish_kt_using_subcommand org; and __fish_seen_subcommand_from clients" -s q -l quiet -d 'Print nothing but data and errors'
complete -c kt -n "__fish_kt_using_subcommand org; and __fish_seen_subcommand_from clients" -s v -l verbose -d 'Print more about what kt does'
complete -c kt -n "__fish_kt_using_subcommand org; and __fish_seen_subcommand_from clients" -l no-progress -d 'Never show progress bars, even on a terminal'
complete -c kt -n "__fish_kt_using_subcommand org; and __fish_seen_subcommand_from clients" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c kt -n "__fish_kt_using_subcommand org; and __fish_seen_subcommand_from clients" -s V -l version -d 'Print version'
complete -c kt -n "__fish_kt_using_subcommand org; and __fish_seen_subcommand_from help" -f -a "add" -d 'Add an organization with a random auth secret, or add contacts to an existing one'
complete -c kt -n "__fish_kt_using_subcommand org; and __fish_seen_subcommand_from help" -f -a "invite" -d 'Mail contacts of an organization a new registration link (theirs expired, was used, or never arrived); their older unused links stop working'
complete -c kt -n "__fish_kt_using_subcommand org; and __fish_seen_subcommand_from help" -f -a "list" -d 'Print every organization as JSON (auth_secret, contacts, creation, expiration, key_info, name, state, uuid), keyed by name'
complete -c kt -n "__fish_kt_using_subcommand org; and __fish_seen_subcommand_from help" -f -a "set-auth" -d 'Set an organization\'s auth secret; an empty secret (-s "") approves every new client automatically'
complete -c kt -n "__fish_kt_using_subcommand org; and __fish_seen_subcommand_from help" -f -a "enable-client" -d 'Approve a client that awaits approval, or allow a disabled client to act again'
complete -c kt -n "__fish_kt_using_subcommand org; and __fish_seen_subcommand_from help" -f -a "deny-client" -d 'Refuse a client that awaits approval: its registration is removed (it may ask again later)'
complete -c kt -n "__fish_kt_using_subcommand org; and __fish_seen_subcommand_from help" -f -a "disable-client" -d 'Refuse every further request of a client'
complete -c kt -n "__fish_kt_using_subcommand org; and __fish_seen_subcommand_from help" -f -a "clients" -d 'Print the clients (of one organization, or all) as JSON, with their state (active, disabled, pending), the host name each gave (claimed_host: the client\'s claim, not verified) and registration time'
complete -c kt -n "__fish_kt_using_subcommand org; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c kt -n "__fish_kt_using_subcommand client; and not __fish_seen_subcommand_from register put get list delete status bench help" -l dir -d 'The client\'s directory' -r -F
complete -c kt -n "__fish_kt_using_subcommand client; and not __fish_seen_subcommand_from register put get list delete status bench help" -s c -l confdir -d 'The instance\'s configuration directory' -r -F
complete -c kt -n "__fish_kt_using_subcommand client; and not __fish_seen_subcommand_from register put get list delete status bench help" -s q -l quiet -d 'Print nothing but data and errors'
complete -c kt -n "__fish_kt_using_subcommand client; and not __fish_seen_subcommand_from register put get list delete status bench help" -s v -l verbose -d 'Print more about what kt does'
complete -c kt -n "__fish_kt_using_subcommand client; and not __fish_seen_subcommand_from register put get list delete status bench help" -l no-progress -d 'Never show progress bars, even on a terminal'
complete -c kt -n "__fish_kt_using_subcommand client; and not __fish_seen_subcommand_from register put get list delete status bench help" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c kt -n "__fish_kt_using_subcommand client; and not __fish_seen_subcommand_from register put get list delete status bench help" -s V -l version -d 'Print version'
complete -c kt -n "__fish_kt_using_subcommand client; and not __fish_seen_subcommand_from register put get list delete status bench help" -f -a "register" -d 'Create a key and register it with an organization'
complete -c kt -n "__fish_kt_using_subcommand client; and not __fish_seen_subcommand_from register put get list delete status bench help" -f -a "put" -d 'Store a new deposit from FILE (or standard input); prints its UUID'
complete -c kt -n "__fish_kt_using_subcommand client; and not __fish_seen_subcommand_from register put get list delete status bench help" -f -a "get" -d 'Write a deposit to standard output'
complete -c kt -n "__fish_kt_using_subcommand client; and not __fish_seen_subcommand_from register put get list delete status bench help" -f -a "list" -d 'List this client\'s deposits as JSON'
complete -c kt -n "__fish_kt_using_subcommand client; and not __fish_seen_subcommand_from register put get list delete status bench help" -f -a "delete" -d 'Delete a deposit'
complete -c kt -n "__fish_kt_using_subcommand client; and not __fish_seen_subcommand_from register put get list delete status bench help" -f -a "status" -d 'Show this client\'s fingerprint, organization, state and servers'
complete -c kt -n "__fish_kt_using_subcommand client; and not __fish_seen_subcommand_from register put get list delete status bench help" -f -a "bench" -d 'Send a bounded load of signed requests and report throughput and latency'
complete -c kt -n "__fish_kt_using_subcommand client; and not __fish_seen_subcommand_from register put get list delete status bench help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c kt -n "__fish_kt_using_subcommand client; and __fish_seen_subcommand_from register" -l server -d 'A server URL, https://HOST[:PORT] (repeatable: reads fail over in order)' -r
complete -c kt -n "__fish_kt_using_subcommand client; and __fish_seen_subcommand_from register" -l org -d 'The organization to register with' -r
complete -c kt -n "__fish_kt_using_subcommand client; and __fish_seen_subcommand_from register" -l auth-secret-file -d 'A file holding the organization\'s auth secret (empty for automatic approval)' -r -F
complete -c kt -n "__fish_kt_using_subcommand client; and __fish_seen_subcommand_from register" -l ca -d 'Trust the server certificates issued by (or equal to) this PEM file' -r -F
complete -c kt -n "__fish_kt_using_subcommand client; and __fish_seen_subcommand_from register" -l key-type -d 'The kind of client key to generate' -r -f -a "rsa4096\t'RSA 4096 with an RSA 4096 encryption subkey'
ed25519\t'Ed25519 with a Curve25519 encryption subkey'"
complete -c kt -n "__fish_kt_using_subcommand client; and __fish_seen_subcommand_from register" -s c -l confdir -d 'The instance\'s configuration directory' -r -F
complete -c kt -n "__fish_kt_using_subcommand client; and __fish_seen_subcommand_from register" -l insecure -d 'Do not check the server certificate (tests and first contact only)'
complete -c kt -n "__fish_kt_using_subcommand client; and __fish_seen_subcommand_from register" -s q -l quiet -d 'Print nothing but data and errors'
complete -c kt -n "__fish_kt_using_subcommand client; and __fish_seen_subcommand_from register" -s v -l verbose -d 'Print more about what kt does'
complete -c kt -n "__fish_kt_using_subcommand client; and __fish_seen_subcommand_from register" -l no-progress -d 'Never show progress bars, even on a terminal'
complete -c kt -n "__fish_kt_using_subcommand client; and __fish_seen_subcommand_from register" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c kt -n "__fish_kt_using_subcommand client; and __fish_seen_subcommand_from register" -s V -l version -d 'Print version'
complete -c kt -n "__fish_kt_using_subcommand client; and __fish_seen_subcommand_from put" -s c -l confdir -d 'The instance\'s configuration directory' -r -F
complete -c kt -n "__fish_kt_using_subcommand client; and __fish_seen_subcommand_from put" -s q -l quiet -d 'Print nothing but data and errors'
complete -c kt -n "__fish_kt_using_subcommand client; and __fish_seen_subcommand_from put" -s v -l verbose -d 'Print more about what kt does'
complete -c kt -n "__fish_kt_using_subcommand client; and __fish_seen_subcommand_from put" -l no-progress -d 'Never show progress bars, even on a terminal'
complete -c kt -n "__fish_kt_using_subcommand client; and __fish_seen_subcommand_from put" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c kt -n "__fish_kt_using_subcommand client; and __fish_seen_subcommand_from put" -s V -l version -d 'Print version'
complete -c kt -n "__fish_kt_using_subcommand client; and __fish_seen_subcommand_from get" -s c -l confdir -d 'The instance\'s configuration directory' -r -F
complete -c kt -n "__fish_kt_using_subcommand client; and __fish_seen_subcommand_from get" -s q -l quiet -d 'Print nothing but data and errors'
complete -c kt -n "__fish_kt_using_subcommand client; and __fish_seen_subcommand_from get" -s v -l verbose -d 'Print more about what kt does'
complete -c kt -n "__fish_kt_using_subcommand client; and __fish_seen_subcommand_from get" -l no-progress -d 'Never show progress bars, even on a terminal'
complete -c kt -n "__fish_kt_using_subcommand client; and __fish_seen_subcommand_from get" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c kt -n "__fish_kt_using_subcommand client; and __fish_seen_subcommand_from get" -s V -l version -d 'Print version'
complete -c kt -n "__fish_kt_using_subcommand client; and __fish_seen_subcommand_from list" -s c -l confdir -d 'The instance\'s configuration directory' -r -F
complete -c kt -n "__fish_kt_using_subcommand client; and __fish_seen_subcommand_from list" -s q -l quiet -d 'Print nothing but data and errors'
complete -c kt -n "__fish_kt_using_subcommand client; and __fish_seen_subcommand_from list" -s v -l verbose -d 'Print more about what kt does'
complete -c kt -n "__fish_kt_using_subcommand client; and __fish_seen_subcommand_from list" -l no-progress -d 'Never show progress bars, even on a terminal'
complete -c kt -n "__fish_kt_using_subcommand client; and __fish_seen_subcommand_from list" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c kt -n "__fish_kt_using_subcommand client; and __fish_seen_subcommand_from list" -s V -l version -d 'Print version'
complete -c kt -n "__fish_kt_using_subcommand client; and __fish_seen_subcommand_from delete" -s c -l confdir -d 'The instance\'s configuration directory' -r -F
complete -c kt -n "__fish_kt_using_subcommand client; and __fish_seen_subcommand_from delete" -s q -l quiet -d 'Print nothing but data and errors'
complete -c kt -n "__fish_kt_using_subcommand client; and __fish_seen_subcommand_from delete" -s v -l verbose -d 'Print more about what kt does'
complete -c kt -n "__fish_kt_using_subcommand client; and __fish_seen_subcommand_from delete" -l no-progress -d 'Never show progress bars, even on a terminal'
complete -c kt -n "__fish_kt_using_subcommand client; and __fish_seen_subcommand_from delete" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c kt -n "__fish_kt_using_subcommand client; and __fish_seen_subcommand_from delete" -s V -l version -d 'Print version'
complete -c kt -n "__fish_kt_using_subcommand client; and __fish_seen_subcommand_from status" -s c -l confdir -d 'The instance\'s configuration directory' -r -F
complete -c kt -n "__fish_kt_using_subcommand client; and __fish_seen_subcommand_from status" -s q -l quiet -d 'Print nothing but data and errors'
complete -c kt -n "__fish_kt_using_subcommand client; and __fish_seen_subcommand_from status" -s v -l verbose -d 'Print more about what kt does'
complete -c kt -n "__fish_kt_using_subcommand client; and __fish_seen_subcommand_from status" -l no-progress -d 'Never show progress bars, even on a terminal'
complete -c kt -n "__fish_kt_using_subcommand client; and __fish_seen_subcommand_from status" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c kt -n "__fish_kt_using_subcommand client; and __fish_seen_subcommand_from status" -s V -l version -d 'Print version'
complete -c kt -n "__fish_kt_using_subcommand client; and __fish_seen_subcommand_from bench" -l op -d 'What to send' -r -f -a "get\t'Fetch random existing deposits'
put\t'Create new deposits'"
complete -c kt -n "__fish_kt_using_subcommand client; and __fish_seen_subcommand_from bench" -l connections -d 'Parallel keep-alive connections' -r
complete -c kt -n "__fish_kt_using_subcommand client; and __fish_seen_subcommand_from bench" -l seconds -d 'Stop after this many seconds' -r
complete -c kt -n "__fish_kt_using_subcommand client; and __fish_seen_subcommand_from bench" -l requests -d 'Stop after this many requests' -r
complete -c kt -n "__fish_kt_using_subcommand client; and __fish_seen_subcommand_from bench" -l size -d 'Bytes per deposit for --op put' -r
complete -c kt -n "__fish_kt_using_subcommand client; and __fish_seen_subcommand_from bench" -l rate -d 'Aim for this many requests per second in total (default: as fast as the server answers). Latency is then measured from each request\'s scheduled time' -r
complete -c kt -n "__fish_kt_using_subcommand client; and __fish_seen_subcommand_from bench" -s c -l confdir -d 'The instance\'s configuration directory' -r -F
complete -c kt -n "__fish_kt_using_subcommand client; and __fish_seen_subcommand_from bench" -s q -l quiet -d 'Print nothing but data and errors'
complete -c kt -n "__fish_kt_using_subcommand client; and __fish_seen_subcommand_from bench" -s v -l verbose -d 'Print more about what kt does'
complete -c kt -n "__fish_kt_using_subcommand client; and __fish_seen_subcommand_from bench" -l no-progress -d 'Never show progress bars, even on a terminal'
complete -c kt -n "__fish_kt_using_subcommand client; and __fish_seen_subcommand_from bench" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c kt -n "__fish_kt_using_subcommand client; and __fish_seen_subcommand_from bench" -s V -l version -d 'Print version'
complete -c kt -n "__fish_kt_using_subcommand client; and __fish_seen_subcommand_from help" -f -a "register" -d 'Create a key and register it with an organization'
complete -c kt -n "__fish_kt_using_subcommand client; and __fish_seen_subcommand_from help" -f -a "put" -d 'Store a new deposit from FILE (or standard input); prints its UUID'
complete -c kt -n "__fish_kt_using_subcommand client; and __fish_seen_subcommand_from help" -f -a "get" -d 'Write a deposit to standard output'
complete -c kt -n "__fish_kt_using_subcommand client; and __fish_seen_subcommand_from help" -f -a "list" -d 'List this client\'s deposits as JSON'
complete -c kt -n "__fish_kt_using_subcommand client; and __fish_seen_subcommand_from help" -f -a "delete" -d 'Delete a deposit'
complete -c kt -n "__fish_kt_using_subcommand client; and __fish_seen_subcommand_from help" -f -a "status" -d 'Show this client\'s fingerprint, organization, state and servers'
complete -c kt -n "__fish_kt_using_subcommand client; and __fish_seen_subcommand_from help" -f -a "bench" -d 'Send a bounded load of signed requests and report throughput and latency'
complete -c kt -n "__fish_kt_using_subcommand client; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c kt -n "__fish_kt_using_subcommand backup; and not __fish_seen_subcommand_from list help" -l gpg-recipient -d 'Encrypt to this key, found as `gpg -r` finds it in the GnuPG keyring of the account running kt (GNUPGHOME honoured). Repeatable: each recipient alone can decrypt' -r
complete -c kt -n "__fish_kt_using_subcommand backup; and not __fish_seen_subcommand_from list help" -l gpg-recipient-file -d 'Encrypt to the public key in this (armored) file. Repeatable' -r -F
complete -c kt -n "__fish_kt_using_subcommand backup; and not __fish_seen_subcommand_from list help" -l output -d 'The directory to write the backup to (default: the instance home)' -r -F
complete -c kt -n "__fish_kt_using_subcommand backup; and not __fish_seen_subcommand_from list help" -l roll -d 'Keep the N newest backups of this host, the new one included, and remove older ones (after the new one is complete)' -r
complete -c kt -n "__fish_kt_using_subcommand backup; and not __fish_seen_subcommand_from list help" -l lock-wait -d 'Wait this long (30s, 10m, 2h) for another backup to finish instead of failing at once' -r
complete -c kt -n "__fish_kt_using_subcommand backup; and not __fish_seen_subcommand_from list help" -l database-port -d 'Connect to the database on this port instead of DB_PORT' -r
complete -c kt -n "__fish_kt_using_subcommand backup; and not __fish_seen_subcommand_from list help" -l metrics-file -d 'Also write the run\'s result (success, duration, bytes, rows) to this file in the Prometheus text format, for node-exporter\'s textfile collector (name it *.prom in its directory); written atomically, after a failed run too' -r -F
complete -c kt -n "__fish_kt_using_subcommand backup; and not __fish_seen_subcommand_from list help" -s c -l confdir -d 'The instance\'s configuration directory' -r -F
complete -c kt -n "__fish_kt_using_subcommand backup; and not __fish_seen_subcommand_from list help" -l cleartext -d 'Write an unencrypted tarball (only when asked for)'
complete -c kt -n "__fish_kt_using_subcommand backup; and not __fish_seen_subcommand_from list help" -s q -l quiet -d 'Print nothing but data and errors'
complete -c kt -n "__fish_kt_using_subcommand backup; and not __fish_seen_subcommand_from list help" -s v -l verbose -d 'Print more about what kt does'
complete -c kt -n "__fish_kt_using_subcommand backup; and not __fish_seen_subcommand_from list help" -l no-progress -d 'Never show progress bars, even on a terminal'
complete -c kt -n "__fish_kt_using_subcommand backup; and not __fish_seen_subcommand_from list help" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c kt -n "__fish_kt_using_subcommand backup; and not __fish_seen_subcommand_from list help" -s V -l version -d 'Print version'
complete -c kt -n "__fish_kt_using_subcommand backup; and not __fish_seen_subcommand_from list help" -f -a "list" -d 'List the backups in a directory, newest first, with size, age, encryption and the recipients\' key IDs'
complete -c kt -n "__fish_kt_using_subcommand backup; and not __fish_seen_subcommand_from list help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c kt -n "__fish_kt_using_subcommand backup; and __fish_seen_subcommand_from list" -l output -d 'The directory (default: the instance home)' -r -F
complete -c kt -n "__fish_kt_using_subcommand backup; and __fish_seen_subcommand_from list" -s c -l confdir -d 'The instance\'s configuration directory' -r -F
complete -c kt -n "__fish_kt_using_subcommand backup; and __fish_seen_subcommand_from list" -l json -d 'Print JSON'
complete -c kt -n "__fish_kt_using_subcommand backup; and __fish_seen_subcommand_from list" -s q -l quiet -d 'Print nothing but data and errors'
complete -c kt -n "__fish_kt_using_subcommand backup; and __fish_seen_subcommand_from list" -s v -l verbose -d 'Print more about what kt does'
complete -c kt -n "__fish_kt_using_subcommand backup; and __fish_seen_subcommand_from list" -l no-progress -d 'Never show progress bars, even on a terminal'
complete -c kt -n "__fish_kt_using_subcommand backup; and __fish_seen_subcommand_from list" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c kt -n "__fish_kt_using_subcommand backup; and __fish_seen_subcommand_from list" -s V -l version -d 'Print version'
complete -c kt -n "__fish_kt_using_subcommand backup; and __fish_seen_subcommand_from help" -f -a "list" -d 'List the backups in a directory, newest first, with size, age, encryption and the recipients\' key IDs'
complete -c kt -n "__fish_kt_using_subcommand backup; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c kt -n "__fish_kt_using_subcommand verify; and not __fish_seen_subcommand_from backup help" -l warn-days -d 'A certificate with fewer days left than this is a problem' -r
complete -c kt -n "__fish_kt_using_subcommand verify; and not __fish_seen_subcommand_from backup help" -l max-age -d 'The newest backup must be younger than this (30m, 12h, 2d)' -r
complete -c kt -n "__fish_kt_using_subcommand verify; and not __fish_seen_subcommand_from backup help" -l backup-dir -d 'Where the backups are (default: the instance home)' -r -F
complete -c kt -n "__fish_kt_using_subcommand verify; and not __fish_seen_subcommand_from backup help" -l server -d 'Check this server from outside (repeatable: every HA host)' -r
complete -c kt -n "__fish_kt_using_subcommand verify; and not __fish_seen_subcommand_from backup help" -l ca -d 'Trust server certificates issued by (or equal to) this PEM file' -r -F
complete -c kt -n "__fish_kt_using_subcommand verify; and not __fish_seen_subcommand_from backup help" -l expect-fingerprint -d 'The fingerprint the servers must answer' -r
complete -c kt -n "__fish_kt_using_subcommand verify; and not __fish_seen_subcommand_from backup help" -s c -l confdir -d 'The instance\'s configuration directory' -r -F
complete -c kt -n "__fish_kt_using_subcommand verify; and not __fish_seen_subcommand_from backup help" -l json -d 'Print the checks as JSON'
complete -c kt -n "__fish_kt_using_subcommand verify; and not __fish_seen_subcommand_from backup help" -l insecure -d 'Do not verify the server certificate chain and name'
complete -c kt -n "__fish_kt_using_subcommand verify; and not __fish_seen_subcommand_from backup help" -s q -l quiet -d 'Print nothing but data and errors'
complete -c kt -n "__fish_kt_using_subcommand verify; and not __fish_seen_subcommand_from backup help" -s v -l verbose -d 'Print more about what kt does'
complete -c kt -n "__fish_kt_using_subcommand verify; and not __fish_seen_subcommand_from backup help" -l no-progress -d 'Never show progress bars, even on a terminal'
complete -c kt -n "__fish_kt_using_subcommand verify; and not __fish_seen_subcommand_from backup help" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c kt -n "__fish_kt_using_subcommand verify; and not __fish_seen_subcommand_from backup help" -s V -l version -d 'Print version'
complete -c kt -n "__fish_kt_using_subcommand verify; and not __fish_seen_subcommand_from backup help" -f -a "backup" -d 'Check that a backup file is whole, signed by the server and restorable'
complete -c kt -n "__fish_kt_using_subcommand verify; and not __fish_seen_subcommand_from backup help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c kt -n "__fish_kt_using_subcommand verify; and __fish_seen_subcommand_from backup" -l secret-key -d 'Decrypt with this OpenPGP secret key (armored or binary)' -r -F
complete -c kt -n "__fish_kt_using_subcommand verify; and __fish_seen_subcommand_from backup" -l passphrase-file -d 'The secret key\'s passphrase, from a file' -r -F
complete -c kt -n "__fish_kt_using_subcommand verify; and __fish_seen_subcommand_from backup" -l expect-fingerprint -d 'The server key the backup must carry (`4096R/4EDC...` or the bare fingerprint); default: this instance\'s key, when there is one' -r
complete -c kt -n "__fish_kt_using_subcommand verify; and __fish_seen_subcommand_from backup" -s c -l confdir -d 'The instance\'s configuration directory' -r -F
complete -c kt -n "__fish_kt_using_subcommand verify; and __fish_seen_subcommand_from backup" -l decrypt -d 'Decrypt with the GnuPG keyring of the account running kt'
complete -c kt -n "__fish_kt_using_subcommand verify; and __fish_seen_subcommand_from backup" -l restore-test -d 'Load the dump into a scratch database and compare rows (as a role without superuser rights; only a backup whose server key is this instance\'s or the expected one)'
complete -c kt -n "__fish_kt_using_subcommand verify; and __fish_seen_subcommand_from backup" -l allow-unsigned -d 'Accept a backup without kt\'s signature (made the documented way, or by kt before backups were signed)'
complete -c kt -n "__fish_kt_using_subcommand verify; and __fish_seen_subcommand_from backup" -l json -d 'Print the checks as JSON'
complete -c kt -n "__fish_kt_using_subcommand verify; and __fish_seen_subcommand_from backup" -s q -l quiet -d 'Print nothing but data and errors'
complete -c kt -n "__fish_kt_using_subcommand verify; and __fish_seen_subcommand_from backup" -s v -l verbose -d 'Print more about what kt does'
complete -c kt -n "__fish_kt_using_subcommand verify; and __fish_seen_subcommand_from backup" -l no-progress -d 'Never show progress bars, even on a terminal'
complete -c kt -n "__fish_kt_using_subcommand verify; and __fish_seen_subcommand_from backup" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c kt -n "__fish_kt_using_subcommand verify; and __fish_seen_subcommand_from backup" -s V -l version -d 'Print version'
complete -c kt -n "__fish_kt_using_subcommand verify; and __fish_seen_subcommand_from help" -f -a "backup" -d 'Check that a backup file is whole, signed by the server and restorable'
complete -c kt -n "__fish_kt_using_subcommand verify; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c kt -n "__fish_kt_using_subcommand restore" -l zip-password-file -d 'The zips\' password, from a file (else asked on the terminal)' -r -F
complete -c kt -n "__fish_kt_using_subcommand restore" -l secret-key -d 'Decrypt with this OpenPGP secret key instead of the GnuPG keyring' -r -F
complete -c kt -n "__fish_kt_using_subcommand restore" -l passphrase-file -d 'The secret key\'s passphrase, from a file' -r -F
complete -c kt -n "__fish_kt_using_subcommand restore" -l expect-fingerprint -d 'The server key the backup must carry (`4096R/4EDC...` or the bare fingerprint). Needed with --yes where there is no instance key to compare with (a fresh host, or --force-foreign)' -r
complete -c kt -n "__fish_kt_using_subcommand restore" -l service-user -d 'The account PostgreSQL runs as when root (default: the backup\'s SERVICE_USER)' -r
complete -c kt -n "__fish_kt_using_subcommand restore" -l metrics-file -d 'Also write the restore\'s result (success, duration, bytes read, rows) to this file in the Prometheus text format, for node-exporter\'s textfile collector; written atomically, after a failed restore too (not with --dry-run)' -r -F
complete -c kt -n "__fish_kt_using_subcommand restore" -s c -l confdir -d 'The instance\'s configuration directory' -r -F
complete -c kt -n "__fish_kt_using_subcommand restore" -l force-foreign -d 'Accept a backup of another host or key (this host replaces it)'
complete -c kt -n "__fish_kt_using_subcommand restore" -l allow-unsigned -d 'Accept a backup without kt\'s signature (made the documented way, or by kt before backups were signed)'
complete -c kt -n "__fish_kt_using_subcommand restore" -l dry-run -d 'Check the backup and show the plan; change nothing'
complete -c kt -n "__fish_kt_using_subcommand restore" -l yes -d 'Do not ask for confirmation'
complete -c kt -n "__fish_kt_using_subcommand restore" -s q -l quiet -d 'Print nothing but data and errors'
complete -c kt -n "__fish_kt_using_subcommand restore" -s v -l verbose -d 'Print more about what kt does'
complete -c kt -n "__fish_kt_using_subcommand restore" -l no-progress -d 'Never show progress bars, even on a terminal'
complete -c kt -n "__fish_kt_using_subcommand restore" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c kt -n "__fish_kt_using_subcommand restore" -s V -l version -d 'Print version'
complete -c kt -n "__fish_kt_using_subcommand cert; and not __fish_seen_subcommand_from generate replace rollback show check help" -s c -l confdir -d 'The instance\'s configuration directory' -r -F
complete -c kt -n "__fish_kt_using_subcommand cert; and not __fish_seen_subcommand_from generate replace rollback show check help" -s q -l quiet -d 'Print nothing but data and errors'
complete -c kt -n "__fish_kt_using_subcommand cert; and not __fish_seen_subcommand_from generate replace rollback show check help" -s v -l verbose -d 'Print more about what kt does'
complete -c kt -n "__fish_kt_using_subcommand cert; and not __fish_seen_subcommand_from generate replace rollback show check help" -l no-progress -d 'Never show progress bars, even on a terminal'
complete -c kt -n "__fish_kt_using_subcommand cert; and not __fish_seen_subcommand_from generate replace rollback show check help" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c kt -n "__fish_kt_using_subcommand cert; and not __fish_seen_subcommand_from generate replace rollback show check help" -s V -l version -d 'Print version'
complete -c kt -n "__fish_kt_using_subcommand cert; and not __fish_seen_subcommand_from generate replace rollback show check help" -f -a "generate" -d 'Make a key, a certificate signing request or a certificate'
complete -c kt -n "__fish_kt_using_subcommand cert; and not __fish_seen_subcommand_from generate replace rollback show check help" -f -a "replace" -d 'Put a new certificate in place in a running server, with no downtime'
complete -c kt -n "__fish_kt_using_subcommand cert; and not __fish_seen_subcommand_from generate replace rollback show check help" -f -a "rollback" -d 'Put the certificate saved in .ssl.bak back in place, the same checked way as `kt cert replace` (the current one goes to .ssl.bak in turn)'
complete -c kt -n "__fish_kt_using_subcommand cert; and not __fish_seen_subcommand_from generate replace rollback show check help" -f -a "show" -d 'Show a certificate: subject, names, issuer, validity, fingerprint, key, chain'
complete -c kt -n "__fish_kt_using_subcommand cert; and not __fish_seen_subcommand_from generate replace rollback show check help" -f -a "check" -d 'Check the instance\'s certificate, for monitoring and cron'
complete -c kt -n "__fish_kt_using_subcommand cert; and not __fish_seen_subcommand_from generate replace rollback show check help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c kt -n "__fish_kt_using_subcommand cert; and __fish_seen_subcommand_from generate" -l key -d 'The private key to use (PKCS#8, PKCS#1 or SEC1 PEM, or encrypted PKCS#8)' -r -F
complete -c kt -n "__fish_kt_using_subcommand cert; and __fish_seen_subcommand_from generate" -l key-password-file -d 'A file whose first line is the key\'s password' -r -F
complete -c kt -n "__fish_kt_using_subcommand cert; and __fish_seen_subcommand_from generate" -l key-password-script -d 'A command whose output is the key\'s password (the contract of SSL_PRIVATE_KEY_PASSWORD_SCRIPT)' -r
complete -c kt -n "__fish_kt_using_subcommand cert; and __fish_seen_subcommand_from generate" -l new-key -d 'Make a new key of this kind (written to --key-out, mode 0600)' -r -f -a "rsa2048\t''
rsa3072\t''
rsa4096\t''
ec-p256\t''
ec-p384\t''"
complete -c kt -n "__fish_kt_using_subcommand cert; and __fish_seen_subcommand_from generate" -l key-out -d 'Where the new key goes; never over an existing file' -r -F
complete -c kt -n "__fish_kt_using_subcommand cert; and __fish_seen_subcommand_from generate" -l csr -d 'Write a certificate signing request for a CA to sign' -r -F
complete -c kt -n "__fish_kt_using_subcommand cert; and __fish_seen_subcommand_from generate" -l ca-cert -d 'Sign the certificate with this CA certificate (labs and tests)' -r -F
complete -c kt -n "__fish_kt_using_subcommand cert; and __fish_seen_subcommand_from generate" -l ca-key -d 'The CA\'s private key (unencrypted PEM)' -r -F
complete -c kt -n "__fish_kt_using_subcommand cert; and __fish_seen_subcommand_from generate" -l out -d 'Where the certificate goes; never over an existing file' -r -F
complete -c kt -n "__fish_kt_using_subcommand cert; and __fish_seen_subcommand_from generate" -l days -d 'Days the certificate is valid' -r
complete -c kt -n "__fish_kt_using_subcommand cert; and __fish_seen_subcommand_from generate" -l hostname -d 'The host name (CN and first SAN). Defaults to the instance\'s HOSTNAME' -r
complete -c kt -n "__fish_kt_using_subcommand cert; and __fish_seen_subcommand_from generate" -l san -d 'An extra DNS name or IP address for the SANs (repeatable)' -r
complete -c kt -n "__fish_kt_using_subcommand cert; and __fish_seen_subcommand_from generate" -l subject -d 'Other subject fields, as openssl\'s -subj ("/C=US/O=Example/OU=Ops") or comma-separated ("C=US,O=Example"). CN is always the host name' -r
complete -c kt -n "__fish_kt_using_subcommand cert; and __fish_seen_subcommand_from generate" -s c -l confdir -d 'The instance\'s configuration directory' -r -F
complete -c kt -n "__fish_kt_using_subcommand cert; and __fish_seen_subcommand_from generate" -l self-signed -d 'Write a self-signed certificate to --out'
complete -c kt -n "__fish_kt_using_subcommand cert; and __fish_seen_subcommand_from generate" -s q -l quiet -d 'Print nothing but data and errors'
complete -c kt -n "__fish_kt_using_subcommand cert; and __fish_seen_subcommand_from generate" -s v -l verbose -d 'Print more about what kt does'
complete -c kt -n "__fish_kt_using_subcommand cert; and __fish_seen_subcommand_from generate" -l no-progress -d 'Never show progress bars, even on a terminal'
complete -c kt -n "__fish_kt_using_subcommand cert; and __fish_seen_subcommand_from generate" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c kt -n "__fish_kt_using_subcommand cert; and __fish_seen_subcommand_from generate" -s V -l version -d 'Print version'
complete -c kt -n "__fish_kt_using_subcommand cert; and __fish_seen_subcommand_from replace" -l cert -d 'The new certificate (PEM or DER; may carry its chain after it)' -r -F
complete -c kt -n "__fish_kt_using_subcommand cert; and __fish_seen_subcommand_from replace" -l key -d 'Its private key. Defaults to the instance\'s current key' -r -F
complete -c kt -n "__fish_kt_using_subcommand cert; and __fish_seen_subcommand_from replace" -l key-password-file -d 'A file whose first line is the key\'s password' -r -F
complete -c kt -n "__fish_kt_using_subcommand cert; and __fish_seen_subcommand_from replace" -l key-password-script -d 'A command whose output is the key\'s password (the contract of SSL_PRIVATE_KEY_PASSWORD_SCRIPT)' -r
complete -c kt -n "__fish_kt_using_subcommand cert; and __fish_seen_subcommand_from replace" -l ca -d 'The CA chain: root and intermediates in one PEM file, any order. Installed as ssl-cert-keytrustee-ca.pem' -r -F
complete -c kt -n "__fish_kt_using_subcommand cert; and __fish_seen_subcommand_from replace" -l pkcs12 -d 'A PKCS#12 bundle holding the key and certificate (and chain)' -r -F
complete -c kt -n "__fish_kt_using_subcommand cert; and __fish_seen_subcommand_from replace" -l pkcs12-password-file -d 'A file whose first line is the PKCS#12 bundle\'s password' -r -F
complete -c kt -n "__fish_kt_using_subcommand cert; and __fish_seen_subcommand_from replace" -l warn-days -d 'Warn when the certificate has fewer days left than this' -r
complete -c kt -n "__fish_kt_using_subcommand cert; and __fish_seen_subcommand_from replace" -s c -l confdir -d 'The instance\'s configuration directory' -r -F
complete -c kt -n "__fish_kt_using_subcommand cert; and __fish_seen_subcommand_from replace" -l allow-hostname-mismatch -d 'Install a certificate that does not name the instance\'s host name'
complete -c kt -n "__fish_kt_using_subcommand cert; and __fish_seen_subcommand_from replace" -s n -l dry-run -d 'Print the plan and change nothing'
complete -c kt -n "__fish_kt_using_subcommand cert; and __fish_seen_subcommand_from replace" -s q -l quiet -d 'Print nothing but data and errors'
complete -c kt -n "__fish_kt_using_subcommand cert; and __fish_seen_subcommand_from replace" -s v -l verbose -d 'Print more about what kt does'
complete -c kt -n "__fish_kt_using_subcommand cert; and __fish_seen_subcommand_from replace" -l no-progress -d 'Never show progress bars, even on a terminal'
complete -c kt -n "__fish_kt_using_subcommand cert; and __fish_seen_subcommand_from replace" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c kt -n "__fish_kt_using_subcommand cert; and __fish_seen_subcommand_from replace" -s V -l version -d 'Print version'
complete -c kt -n "__fish_kt_using_subcommand cert; and __fish_seen_subcommand_from rollback" -s c -l confdir -d 'The instance\'s configuration directory' -r -F
complete -c kt -n "__fish_kt_using_subcommand cert; and __fish_seen_subcommand_from rollback" -s n -l dry-run -d 'Print the plan and change nothing'
complete -c kt -n "__fish_kt_using_subcommand cert; and __fish_seen_subcommand_from rollback" -l allow-hostname-mismatch -d 'Put back a certificate that does not name the host name'
complete -c kt -n "__fish_kt_using_subcommand cert; and __fish_seen_subcommand_from rollback" -s q -l quiet -d 'Print nothing but data and errors'
complete -c kt -n "__fish_kt_using_subcommand cert; and __fish_seen_subcommand_from rollback" -s v -l verbose -d 'Print more about what kt does'
complete -c kt -n "__fish_kt_using_subcommand cert; and __fish_seen_subcommand_from rollback" -l no-progress -d 'Never show progress bars, even on a terminal'
complete -c kt -n "__fish_kt_using_subcommand cert; and __fish_seen_subcommand_from rollback" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c kt -n "__fish_kt_using_subcommand cert; and __fish_seen_subcommand_from rollback" -s V -l version -d 'Print version'
complete -c kt -n "__fish_kt_using_subcommand cert; and __fish_seen_subcommand_from show" -l server -d 'Show what the server at HOST:PORT presents' -r
complete -c kt -n "__fish_kt_using_subcommand cert; and __fish_seen_subcommand_from show" -s c -l confdir -d 'The instance\'s configuration directory' -r -F
complete -c kt -n "__fish_kt_using_subcommand cert; and __fish_seen_subcommand_from show" -l json -d 'Print JSON'
complete -c kt -n "__fish_kt_using_subcommand cert; and __fish_seen_subcommand_from show" -s q -l quiet -d 'Print nothing but data and errors'
complete -c kt -n "__fish_kt_using_subcommand cert; and __fish_seen_subcommand_from show" -s v -l verbose -d 'Print more about what kt does'
complete -c kt -n "__fish_kt_using_subcommand cert; and __fish_seen_subcommand_from show" -l no-progress -d 'Never show progress bars, even on a terminal'
complete -c kt -n "__fish_kt_using_subcommand cert; and __fish_seen_subcommand_from show" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c kt -n "__fish_kt_using_subcommand cert; and __fish_seen_subcommand_from show" -s V -l version -d 'Print version'
complete -c kt -n "__fish_kt_using_subcommand cert; and __fish_seen_subcommand_from check" -l warn-days -d 'A certificate with fewer days left than this is a problem' -r
complete -c kt -n "__fish_kt_using_subcommand cert; and __fish_seen_subcommand_from check" -s c -l confdir -d 'The instance\'s configuration directory' -r -F
complete -c kt -n "__fish_kt_using_subcommand cert; and __fish_seen_subcommand_from check" -l json -d 'Print JSON'
complete -c kt -n "__fish_kt_using_subcommand cert; and __fish_seen_subcommand_from check" -s q -l quiet -d 'Print nothing but data and errors'
complete -c kt -n "__fish_kt_using_subcommand cert; and __fish_seen_subcommand_from check" -s v -l verbose -d 'Print more about what kt does'
complete -c kt -n "__fish_kt_using_subcommand cert; and __fish_seen_subcommand_from check" -l no-progress -d 'Never show progress bars, even on a terminal'
complete -c kt -n "__fish_kt_using_subcommand cert; and __fish_seen_subcommand_from check" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c kt -n "__fish_kt_using_subcommand cert; and __fish_seen_subcommand_from check" -s V -l version -d 'Print version'
complete -c kt -n "__fish_kt_using_subcommand cert; and __fish_seen_subcommand_from help" -f -a "generate" -d 'Make a key, a certificate signing request or a certificate'
complete -c kt -n "__fish_kt_using_subcommand cert; and __fish_seen_subcommand_from help" -f -a "replace" -d 'Put a new certificate in place in a running server, with no downtime'
complete -c kt -n "__fish_kt_using_subcommand cert; and __fish_seen_subcommand_from help" -f -a "rollback" -d 'Put the certificate saved in .ssl.bak back in place, the same checked way as `kt cert replace` (the current one goes to .ssl.bak in turn)'
complete -c kt -n "__fish_kt_using_subcommand cert; and __fish_seen_subcommand_from help" -f -a "show" -d 'Show a certificate: subject, names, issuer, validity, fingerprint, key, chain'
complete -c kt -n "__fish_kt_using_subcommand cert; and __fish_seen_subcommand_from help" -f -a "check" -d 'Check the instance\'s certificate, for monitoring and cron'
complete -c kt -n "__fish_kt_using_subcommand cert; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c kt -n "__fish_kt_using_subcommand ha; and not __fish_seen_subcommand_from sync enable disable init-passive enable-sync disable-sync status help" -s c -l confdir -d 'The instance\'s configuration directory' -r -F
complete -c kt -n "__fish_kt_using_subcommand ha; and not __fish_seen_subcommand_from sync enable disable init-passive enable-sync disable-sync status help" -s q -l quiet -d 'Print nothing but data and errors'
complete -c kt -n "__fish_kt_using_subcommand ha; and not __fish_seen_subcommand_from sync enable disable init-passive enable-sync disable-sync status help" -s v -l verbose -d 'Print more about what kt does'
complete -c kt -n "__fish_kt_using_subcommand ha; and not __fish_seen_subcommand_from sync enable disable init-passive enable-sync disable-sync status help" -l no-progress -d 'Never show progress bars, even on a terminal'
complete -c kt -n "__fish_kt_using_subcommand ha; and not __fish_seen_subcommand_from sync enable disable init-passive enable-sync disable-sync status help" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c kt -n "__fish_kt_using_subcommand ha; and not __fish_seen_subcommand_from sync enable disable init-passive enable-sync disable-sync status help" -s V -l version -d 'Print version'
complete -c kt -n "__fish_kt_using_subcommand ha; and not __fish_seen_subcommand_from sync enable disable init-passive enable-sync disable-sync status help" -f -a "sync" -d 'Copy files and directories as rsync does, locally or to or from another host'
complete -c kt -n "__fish_kt_using_subcommand ha; and not __fish_seen_subcommand_from sync enable disable init-passive enable-sync disable-sync status help" -f -a "enable" -d 'Prepare the active\'s database for a passive at PEER'
complete -c kt -n "__fish_kt_using_subcommand ha; and not __fish_seen_subcommand_from sync enable disable init-passive enable-sync disable-sync status help" -f -a "disable" -d 'Undo `kt ha enable`: the role, the files and the settings it added'
complete -c kt -n "__fish_kt_using_subcommand ha; and not __fish_seen_subcommand_from sync enable disable init-passive enable-sync disable-sync status help" -f -a "init-passive" -d 'Make this host the passive: copy the active\'s database and stream from it'
complete -c kt -n "__fish_kt_using_subcommand ha; and not __fish_seen_subcommand_from sync enable disable init-passive enable-sync disable-sync status help" -f -a "enable-sync" -d 'Turn on synchronous replication: a commit waits until the passive has applied it'
complete -c kt -n "__fish_kt_using_subcommand ha; and not __fish_seen_subcommand_from sync enable disable init-passive enable-sync disable-sync status help" -f -a "disable-sync" -d 'Turn off synchronous replication (e.g. while the passive is rebuilt)'
complete -c kt -n "__fish_kt_using_subcommand ha; and not __fish_seen_subcommand_from sync enable disable init-passive enable-sync disable-sync status help" -f -a "status" -d 'Show this host\'s HA role, its peer and the replication state'
complete -c kt -n "__fish_kt_using_subcommand ha; and not __fish_seen_subcommand_from sync enable disable init-passive enable-sync disable-sync status help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c kt -n "__fish_kt_using_subcommand ha; and __fish_seen_subcommand_from sync" -l exclude -d 'Skip paths matching PATTERN (rsync\'s rules: `/` anchors, a trailing `/` matches directories, `*`, `**`, `?`; first matching rule wins; repeatable)' -r
complete -c kt -n "__fish_kt_using_subcommand ha; and __fish_seen_subcommand_from sync" -l include -d 'Do not skip paths matching PATTERN (before a broader --exclude; repeatable)' -r
complete -c kt -n "__fish_kt_using_subcommand ha; and __fish_seen_subcommand_from sync" -s e -l rsh -d 'The remote shell that reaches HOST, split into words as a shell would' -r
complete -c kt -n "__fish_kt_using_subcommand ha; and __fish_seen_subcommand_from sync" -l remote-kt -d 'kt\'s command on the remote host (used verbatim: \'sudo kt\' works)' -r
complete -c kt -n "__fish_kt_using_subcommand ha; and __fish_seen_subcommand_from sync" -l confdir -d 'Keeps kt\'s global -c (--confdir) off this command, where -c is --checksum' -r -F
complete -c kt -n "__fish_kt_using_subcommand ha; and __fish_seen_subcommand_from sync" -s a -l archive -d 'Archive mode: -rlptgoD'
complete -c kt -n "__fish_kt_using_subcommand ha; and __fish_seen_subcommand_from sync" -s r -l recursive -d 'Copy directories recursively'
complete -c kt -n "__fish_kt_using_subcommand ha; and __fish_seen_subcommand_from sync" -s l -l links -d 'Copy symlinks as symlinks (without it they are skipped)'
complete -c kt -n "__fish_kt_using_subcommand ha; and __fish_seen_subcommand_from sync" -s p -l perms -d 'Set the permissions of DEST files to those of SRC'
complete -c kt -n "__fish_kt_using_subcommand ha; and __fish_seen_subcommand_from sync" -s t -l times -d 'Set modification times (without it, a changed file gets the time of the copy)'
complete -c kt -n "__fish_kt_using_subcommand ha; and __fish_seen_subcommand_from sync" -s g -l group -d 'Set groups, by name where the name exists on the receiving host'
complete -c kt -n "__fish_kt_using_subcommand ha; and __fish_seen_subcommand_from sync" -s o -l owner -d 'Set owners, by name where the name exists (only when receiving as root)'
complete -c kt -n "__fish_kt_using_subcommand ha; and __fish_seen_subcommand_from sync" -s D -l devices -d 'Copy devices (as root), fifos and sockets'
complete -c kt -n "__fish_kt_using_subcommand ha; and __fish_seen_subcommand_from sync" -s c -l checksum -d 'Compare files by BLAKE3 hash instead of size and modification time'
complete -c kt -n "__fish_kt_using_subcommand ha; and __fish_seen_subcommand_from sync" -s z -l compress -d 'Compress the data on the wire (zlib) to and from a remote host'
complete -c kt -n "__fish_kt_using_subcommand ha; and __fish_seen_subcommand_from sync" -s n -l dry-run -d 'Show what would change, change nothing'
complete -c kt -n "__fish_kt_using_subcommand ha; and __fish_seen_subcommand_from sync" -s i -l itemize-changes -d 'Print each change in rsync\'s notation (>f+++++++++, .d..t......, *deleting)'
complete -c kt -n "__fish_kt_using_subcommand ha; and __fish_seen_subcommand_from sync" -l delete -d 'Remove DEST files that SRC does not have (not excluded ones), after the transfer'
complete -c kt -n "__fish_kt_using_subcommand ha; and __fish_seen_subcommand_from sync" -s W -l whole-file -d 'Send changed files whole, no delta against DEST\'s old file (rsync\'s -W; the default when SRC and DEST are both local, as in rsync)'
complete -c kt -n "__fish_kt_using_subcommand ha; and __fish_seen_subcommand_from sync" -l no-whole-file -d 'Send deltas against DEST\'s old files even when both sides are local'
complete -c kt -n "__fish_kt_using_subcommand ha; and __fish_seen_subcommand_from sync" -l server -d 'Run the remote side of a session on stdin and stdout (started by kt)'
complete -c kt -n "__fish_kt_using_subcommand ha; and __fish_seen_subcommand_from sync" -l sender -d 'With --server: send PATH....'
complete -c kt -n "__fish_kt_using_subcommand ha; and __fish_seen_subcommand_from sync" -l receiver -d 'With --server: receive into PATH'
complete -c kt -n "__fish_kt_using_subcommand ha; and __fish_seen_subcommand_from sync" -s q -l quiet -d 'Print nothing but data and errors'
complete -c kt -n "__fish_kt_using_subcommand ha; and __fish_seen_subcommand_from sync" -s v -l verbose -d 'Print more about what kt does'
complete -c kt -n "__fish_kt_using_subcommand ha; and __fish_seen_subcommand_from sync" -l no-progress -d 'Never show progress bars, even on a terminal'
complete -c kt -n "__fish_kt_using_subcommand ha; and __fish_seen_subcommand_from sync" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c kt -n "__fish_kt_using_subcommand ha; and __fish_seen_subcommand_from sync" -s V -l version -d 'Print version'
complete -c kt -n "__fish_kt_using_subcommand ha; and __fish_seen_subcommand_from enable" -l peer -d 'The passive host (name or address) and its database port (default: this instance\'s)' -r
complete -c kt -n "__fish_kt_using_subcommand ha; and __fish_seen_subcommand_from enable" -s c -l confdir -d 'The instance\'s configuration directory' -r -F
complete -c kt -n "__fish_kt_using_subcommand ha; and __fish_seen_subcommand_from enable" -s q -l quiet -d 'Print nothing but data and errors'
complete -c kt -n "__fish_kt_using_subcommand ha; and __fish_seen_subcommand_from enable" -s v -l verbose -d 'Print more about what kt does'
complete -c kt -n "__fish_kt_using_subcommand ha; and __fish_seen_subcommand_from enable" -l no-progress -d 'Never show progress bars, even on a terminal'
complete -c kt -n "__fish_kt_using_subcommand ha; and __fish_seen_subcommand_from enable" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c kt -n "__fish_kt_using_subcommand ha; and __fish_seen_subcommand_from enable" -s V -l version -d 'Print version'
complete -c kt -n "__fish_kt_using_subcommand ha; and __fish_seen_subcommand_from disable" -s c -l confdir -d 'The instance\'s configuration directory' -r -F
complete -c kt -n "__fish_kt_using_subcommand ha; and __fish_seen_subcommand_from disable" -s q -l quiet -d 'Print nothing but data and errors'
complete -c kt -n "__fish_kt_using_subcommand ha; and __fish_seen_subcommand_from disable" -s v -l verbose -d 'Print more about what kt does'
complete -c kt -n "__fish_kt_using_subcommand ha; and __fish_seen_subcommand_from disable" -l no-progress -d 'Never show progress bars, even on a terminal'
complete -c kt -n "__fish_kt_using_subcommand ha; and __fish_seen_subcommand_from disable" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c kt -n "__fish_kt_using_subcommand ha; and __fish_seen_subcommand_from disable" -s V -l version -d 'Print version'
complete -c kt -n "__fish_kt_using_subcommand ha; and __fish_seen_subcommand_from init-passive" -l active -d 'The active host and its database port (default: DB_PORT of the synced configuration)' -r
complete -c kt -n "__fish_kt_using_subcommand ha; and __fish_seen_subcommand_from init-passive" -l hostname -d 'This host\'s name, in its certificate and keytrustee.conf (default: its FQDN)' -r
complete -c kt -n "__fish_kt_using_subcommand ha; and __fish_seen_subcommand_from init-passive" -l pg-rootdir -d 'This host\'s PostgreSQL data directory, when not the active\'s path' -r -F
complete -c kt -n "__fish_kt_using_subcommand ha; and __fish_seen_subcommand_from init-passive" -l database-port -d 'This host\'s database port, when not the active\'s' -r
complete -c kt -n "__fish_kt_using_subcommand ha; and __fish_seen_subcommand_from init-passive" -l listen -d 'Where this host\'s key server listens, when not where the active\'s does' -r
complete -c kt -n "__fish_kt_using_subcommand ha; and __fish_seen_subcommand_from init-passive" -l wait -d 'How long to wait for the active\'s database to answer' -r
complete -c kt -n "__fish_kt_using_subcommand ha; and __fish_seen_subcommand_from init-passive" -l cert-days -d 'Days the self-signed TLS certificate is valid' -r
complete -c kt -n "__fish_kt_using_subcommand ha; and __fish_seen_subcommand_from init-passive" -l san -d 'An extra DNS name or IP address for the TLS certificate (repeatable)' -r
complete -c kt -n "__fish_kt_using_subcommand ha; and __fish_seen_subcommand_from init-passive" -s c -l confdir -d 'The instance\'s configuration directory' -r -F
complete -c kt -n "__fish_kt_using_subcommand ha; and __fish_seen_subcommand_from init-passive" -l force -d 'Replace this host\'s database (set aside, not deleted) and stop its server'
complete -c kt -n "__fish_kt_using_subcommand ha; and __fish_seen_subcommand_from init-passive" -s q -l quiet -d 'Print nothing but data and errors'
complete -c kt -n "__fish_kt_using_subcommand ha; and __fish_seen_subcommand_from init-passive" -s v -l verbose -d 'Print more about what kt does'
complete -c kt -n "__fish_kt_using_subcommand ha; and __fish_seen_subcommand_from init-passive" -l no-progress -d 'Never show progress bars, even on a terminal'
complete -c kt -n "__fish_kt_using_subcommand ha; and __fish_seen_subcommand_from init-passive" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c kt -n "__fish_kt_using_subcommand ha; and __fish_seen_subcommand_from init-passive" -s V -l version -d 'Print version'
complete -c kt -n "__fish_kt_using_subcommand ha; and __fish_seen_subcommand_from enable-sync" -l wait -d 'How long to wait for the passive to become synchronous' -r
complete -c kt -n "__fish_kt_using_subcommand ha; and __fish_seen_subcommand_from enable-sync" -s c -l confdir -d 'The instance\'s configuration directory' -r -F
complete -c kt -n "__fish_kt_using_subcommand ha; and __fish_seen_subcommand_from enable-sync" -s q -l quiet -d 'Print nothing but data and errors'
complete -c kt -n "__fish_kt_using_subcommand ha; and __fish_seen_subcommand_from enable-sync" -s v -l verbose -d 'Print more about what kt does'
complete -c kt -n "__fish_kt_using_subcommand ha; and __fish_seen_subcommand_from enable-sync" -l no-progress -d 'Never show progress bars, even on a terminal'
complete -c kt -n "__fish_kt_using_subcommand ha; and __fish_seen_subcommand_from enable-sync" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c kt -n "__fish_kt_using_subcommand ha; and __fish_seen_subcommand_from enable-sync" -s V -l version -d 'Print version'
complete -c kt -n "__fish_kt_using_subcommand ha; and __fish_seen_subcommand_from disable-sync" -s c -l confdir -d 'The instance\'s configuration directory' -r -F
complete -c kt -n "__fish_kt_using_subcommand ha; and __fish_seen_subcommand_from disable-sync" -s q -l quiet -d 'Print nothing but data and errors'
complete -c kt -n "__fish_kt_using_subcommand ha; and __fish_seen_subcommand_from disable-sync" -s v -l verbose -d 'Print more about what kt does'
complete -c kt -n "__fish_kt_using_subcommand ha; and __fish_seen_subcommand_from disable-sync" -l no-progress -d 'Never show progress bars, even on a terminal'
complete -c kt -n "__fish_kt_using_subcommand ha; and __fish_seen_subcommand_from disable-sync" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c kt -n "__fish_kt_using_subcommand ha; and __fish_seen_subcommand_from disable-sync" -s V -l version -d 'Print version'
complete -c kt -n "__fish_kt_using_subcommand ha; and __fish_seen_subcommand_from status" -l peer -d 'Compare the confdir with the peer\'s: [USER@]HOST[:CONFDIR] (CONFDIR defaults to this host\'s confdir path)' -r
complete -c kt -n "__fish_kt_using_subcommand ha; and __fish_seen_subcommand_from status" -s e -l rsh -d 'The remote shell that reaches the peer, split into words as a shell would' -r
complete -c kt -n "__fish_kt_using_subcommand ha; and __fish_seen_subcommand_from status" -l remote-kt -d 'kt\'s command on the peer (used verbatim: \'sudo kt\' works)' -r
complete -c kt -n "__fish_kt_using_subcommand ha; and __fish_seen_subcommand_from status" -s c -l confdir -d 'The instance\'s configuration directory' -r -F
complete -c kt -n "__fish_kt_using_subcommand ha; and __fish_seen_subcommand_from status" -l json -d 'Print the status as a JSON object'
complete -c kt -n "__fish_kt_using_subcommand ha; and __fish_seen_subcommand_from status" -l clear-reinit -d 'After `kt restore` on this active: remove the restore\'s marker (<home>/ha-reinit-needed) once a standby has caught up with the restore (kept otherwise); the status follows. kt ha enable-sync clears it too'
complete -c kt -n "__fish_kt_using_subcommand ha; and __fish_seen_subcommand_from status" -s q -l quiet -d 'Print nothing but data and errors'
complete -c kt -n "__fish_kt_using_subcommand ha; and __fish_seen_subcommand_from status" -s v -l verbose -d 'Print more about what kt does'
complete -c kt -n "__fish_kt_using_subcommand ha; and __fish_seen_subcommand_from status" -l no-progress -d 'Never show progress bars, even on a terminal'
complete -c kt -n "__fish_kt_using_subcommand ha; and __fish_seen_subcommand_from status" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c kt -n "__fish_kt_using_subcommand ha; and __fish_seen_subcommand_from status" -s V -l version -d 'Print version'
complete -c kt -n "__fish_kt_using_subcommand ha; and __fish_seen_subcommand_from help" -f -a "sync" -d 'Copy files and directories as rsync does, locally or to or from another host'
complete -c kt -n "__fish_kt_using_subcommand ha; and __fish_seen_subcommand_from help" -f -a "enable" -d 'Prepare the active\'s database for a passive at PEER'
complete -c kt -n "__fish_kt_using_subcommand ha; and __fish_seen_subcommand_from help" -f -a "disable" -d 'Undo `kt ha enable`: the role, the files and the settings it added'
complete -c kt -n "__fish_kt_using_subcommand ha; and __fish_seen_subcommand_from help" -f -a "init-passive" -d 'Make this host the passive: copy the active\'s database and stream from it'
complete -c kt -n "__fish_kt_using_subcommand ha; and __fish_seen_subcommand_from help" -f -a "enable-sync" -d 'Turn on synchronous replication: a commit waits until the passive has applied it'
complete -c kt -n "__fish_kt_using_subcommand ha; and __fish_seen_subcommand_from help" -f -a "disable-sync" -d 'Turn off synchronous replication (e.g. while the passive is rebuilt)'
complete -c kt -n "__fish_kt_using_subcommand ha; and __fish_seen_subcommand_from help" -f -a "status" -d 'Show this host\'s HA role, its peer and the replication state'
complete -c kt -n "__fish_kt_using_subcommand ha; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c kt -n "__fish_kt_using_subcommand schedule; and not __fish_seen_subcommand_from add list remove next run systemd help" -s c -l confdir -d 'The instance\'s configuration directory' -r -F
complete -c kt -n "__fish_kt_using_subcommand schedule; and not __fish_seen_subcommand_from add list remove next run systemd help" -s q -l quiet -d 'Print nothing but data and errors'
complete -c kt -n "__fish_kt_using_subcommand schedule; and not __fish_seen_subcommand_from add list remove next run systemd help" -s v -l verbose -d 'Print more about what kt does'
complete -c kt -n "__fish_kt_using_subcommand schedule; and not __fish_seen_subcommand_from add list remove next run systemd help" -l no-progress -d 'Never show progress bars, even on a terminal'
complete -c kt -n "__fish_kt_using_subcommand schedule; and not __fish_seen_subcommand_from add list remove next run systemd help" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c kt -n "__fish_kt_using_subcommand schedule; and not __fish_seen_subcommand_from add list remove next run systemd help" -s V -l version -d 'Print version'
complete -c kt -n "__fish_kt_using_subcommand schedule; and not __fish_seen_subcommand_from add list remove next run systemd help" -f -a "add" -d 'Add an entry: check the cron expression (crontab(5): five fields, lists, ranges, steps, month and day names, 0 and 7 Sunday, the day-of-month / day-of-week OR rule, @hourly @daily @weekly @monthly @yearly @reboot) and the kt command line after `--` exactly as kt parses it, and that the --gpg-recipient keys resolve in the service account\'s keyring; either refused (exit 2) leaves the file as it was. The entry runs with --quiet and its stdout dropped, so cron mails only failures'
complete -c kt -n "__fish_kt_using_subcommand schedule; and not __fish_seen_subcommand_from add list remove next run systemd help" -f -a "list" -d 'List the entries, their commands and their next 5 runs (local time)'
complete -c kt -n "__fish_kt_using_subcommand schedule; and not __fish_seen_subcommand_from add list remove next run systemd help" -f -a "remove" -d 'Remove an entry by name'
complete -c kt -n "__fish_kt_using_subcommand schedule; and not __fish_seen_subcommand_from add list remove next run systemd help" -f -a "next" -d 'Show when a cron expression would run (checking it as add does)'
complete -c kt -n "__fish_kt_using_subcommand schedule; and not __fish_seen_subcommand_from add list remove next run systemd help" -f -a "run" -d 'Run the entries in the foreground, at their times, without cron (for containers): one run at a time, a missed run run once, never twice. SIGTERM or SIGINT waits for a running backup, then exits 0'
complete -c kt -n "__fish_kt_using_subcommand schedule; and not __fish_seen_subcommand_from add list remove next run systemd help" -f -a "systemd" -d 'Print a systemd .service + .timer pair that runs an entry at the same times (OnCalendar=), or write them with --install'
complete -c kt -n "__fish_kt_using_subcommand schedule; and not __fish_seen_subcommand_from add list remove next run systemd help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c kt -n "__fish_kt_using_subcommand schedule; and __fish_seen_subcommand_from add" -l cron -d 'When to run, in crontab(5) syntax (e.g. \'30 2 * * *\', \'@daily\')' -r
complete -c kt -n "__fish_kt_using_subcommand schedule; and __fish_seen_subcommand_from add" -l name -d 'The entry\'s name (default: backup, backup-2, ...)' -r
complete -c kt -n "__fish_kt_using_subcommand schedule; and __fish_seen_subcommand_from add" -l cron-file -d 'The cron file holding kt\'s entries' -r -F
complete -c kt -n "__fish_kt_using_subcommand schedule; and __fish_seen_subcommand_from add" -s c -l confdir -d 'The instance\'s configuration directory' -r -F
complete -c kt -n "__fish_kt_using_subcommand schedule; and __fish_seen_subcommand_from add" -s q -l quiet -d 'Print nothing but data and errors'
complete -c kt -n "__fish_kt_using_subcommand schedule; and __fish_seen_subcommand_from add" -s v -l verbose -d 'Print more about what kt does'
complete -c kt -n "__fish_kt_using_subcommand schedule; and __fish_seen_subcommand_from add" -l no-progress -d 'Never show progress bars, even on a terminal'
complete -c kt -n "__fish_kt_using_subcommand schedule; and __fish_seen_subcommand_from add" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c kt -n "__fish_kt_using_subcommand schedule; and __fish_seen_subcommand_from add" -s V -l version -d 'Print version'
complete -c kt -n "__fish_kt_using_subcommand schedule; and __fish_seen_subcommand_from list" -l cron-file -d 'The cron file holding kt\'s entries' -r -F
complete -c kt -n "__fish_kt_using_subcommand schedule; and __fish_seen_subcommand_from list" -s c -l confdir -d 'The instance\'s configuration directory' -r -F
complete -c kt -n "__fish_kt_using_subcommand schedule; and __fish_seen_subcommand_from list" -l json -d 'Print JSON'
complete -c kt -n "__fish_kt_using_subcommand schedule; and __fish_seen_subcommand_from list" -s q -l quiet -d 'Print nothing but data and errors'
complete -c kt -n "__fish_kt_using_subcommand schedule; and __fish_seen_subcommand_from list" -s v -l verbose -d 'Print more about what kt does'
complete -c kt -n "__fish_kt_using_subcommand schedule; and __fish_seen_subcommand_from list" -l no-progress -d 'Never show progress bars, even on a terminal'
complete -c kt -n "__fish_kt_using_subcommand schedule; and __fish_seen_subcommand_from list" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c kt -n "__fish_kt_using_subcommand schedule; and __fish_seen_subcommand_from list" -s V -l version -d 'Print version'
complete -c kt -n "__fish_kt_using_subcommand schedule; and __fish_seen_subcommand_from remove" -l cron-file -d 'The cron file holding kt\'s entries' -r -F
complete -c kt -n "__fish_kt_using_subcommand schedule; and __fish_seen_subcommand_from remove" -s c -l confdir -d 'The instance\'s configuration directory' -r -F
complete -c kt -n "__fish_kt_using_subcommand schedule; and __fish_seen_subcommand_from remove" -s q -l quiet -d 'Print nothing but data and errors'
complete -c kt -n "__fish_kt_using_subcommand schedule; and __fish_seen_subcommand_from remove" -s v -l verbose -d 'Print more about what kt does'
complete -c kt -n "__fish_kt_using_subcommand schedule; and __fish_seen_subcommand_from remove" -l no-progress -d 'Never show progress bars, even on a terminal'
complete -c kt -n "__fish_kt_using_subcommand schedule; and __fish_seen_subcommand_from remove" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c kt -n "__fish_kt_using_subcommand schedule; and __fish_seen_subcommand_from remove" -s V -l version -d 'Print version'
complete -c kt -n "__fish_kt_using_subcommand schedule; and __fish_seen_subcommand_from next" -l count -d 'How many runs to show' -r
complete -c kt -n "__fish_kt_using_subcommand schedule; and __fish_seen_subcommand_from next" -l from -d 'Count from this local time (\'YYYY-MM-DD HH:MM:SS\') instead of now' -r
complete -c kt -n "__fish_kt_using_subcommand schedule; and __fish_seen_subcommand_from next" -s c -l confdir -d 'The instance\'s configuration directory' -r -F
complete -c kt -n "__fish_kt_using_subcommand schedule; and __fish_seen_subcommand_from next" -l json -d 'Print JSON (with the equivalent systemd OnCalendar= values)'
complete -c kt -n "__fish_kt_using_subcommand schedule; and __fish_seen_subcommand_from next" -s q -l quiet -d 'Print nothing but data and errors'
complete -c kt -n "__fish_kt_using_subcommand schedule; and __fish_seen_subcommand_from next" -s v -l verbose -d 'Print more about what kt does'
complete -c kt -n "__fish_kt_using_subcommand schedule; and __fish_seen_subcommand_from next" -l no-progress -d 'Never show progress bars, even on a terminal'
complete -c kt -n "__fish_kt_using_subcommand schedule; and __fish_seen_subcommand_from next" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c kt -n "__fish_kt_using_subcommand schedule; and __fish_seen_subcommand_from next" -s V -l version -d 'Print version'
complete -c kt -n "__fish_kt_using_subcommand schedule; and __fish_seen_subcommand_from run" -l cron-file -d 'The cron file holding kt\'s entries' -r -F
complete -c kt -n "__fish_kt_using_subcommand schedule; and __fish_seen_subcommand_from run" -l once -d 'Run this entry once, now, as cron would, and exit with its result' -r
complete -c kt -n "__fish_kt_using_subcommand schedule; and __fish_seen_subcommand_from run" -s c -l confdir -d 'The instance\'s configuration directory' -r -F
complete -c kt -n "__fish_kt_using_subcommand schedule; and __fish_seen_subcommand_from run" -s q -l quiet -d 'Print nothing but data and errors'
complete -c kt -n "__fish_kt_using_subcommand schedule; and __fish_seen_subcommand_from run" -s v -l verbose -d 'Print more about what kt does'
complete -c kt -n "__fish_kt_using_subcommand schedule; and __fish_seen_subcommand_from run" -l no-progress -d 'Never show progress bars, even on a terminal'
complete -c kt -n "__fish_kt_using_subcommand schedule; and __fish_seen_subcommand_from run" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c kt -n "__fish_kt_using_subcommand schedule; and __fish_seen_subcommand_from run" -s V -l version -d 'Print version'
complete -c kt -n "__fish_kt_using_subcommand schedule; and __fish_seen_subcommand_from systemd" -l name -d 'The entry\'s name' -r
complete -c kt -n "__fish_kt_using_subcommand schedule; and __fish_seen_subcommand_from systemd" -l cron-file -d 'The cron file holding kt\'s entries' -r -F
complete -c kt -n "__fish_kt_using_subcommand schedule; and __fish_seen_subcommand_from systemd" -l unit-dir -d 'Where --install writes them' -r -F
complete -c kt -n "__fish_kt_using_subcommand schedule; and __fish_seen_subcommand_from systemd" -s c -l confdir -d 'The instance\'s configuration directory' -r -F
complete -c kt -n "__fish_kt_using_subcommand schedule; and __fish_seen_subcommand_from systemd" -l install -d 'Write the units (then: systemctl daemon-reload; systemctl enable --now kt-schedule-NAME.timer)'
complete -c kt -n "__fish_kt_using_subcommand schedule; and __fish_seen_subcommand_from systemd" -s q -l quiet -d 'Print nothing but data and errors'
complete -c kt -n "__fish_kt_using_subcommand schedule; and __fish_seen_subcommand_from systemd" -s v -l verbose -d 'Print more about what kt does'
complete -c kt -n "__fish_kt_using_subcommand schedule; and __fish_seen_subcommand_from systemd" -l no-progress -d 'Never show progress bars, even on a terminal'
complete -c kt -n "__fish_kt_using_subcommand schedule; and __fish_seen_subcommand_from systemd" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c kt -n "__fish_kt_using_subcommand schedule; and __fish_seen_subcommand_from systemd" -s V -l version -d 'Print version'
complete -c kt -n "__fish_kt_using_subcommand schedule; and __fish_seen_subcommand_from help" -f -a "add" -d 'Add an entry: check the cron expression (crontab(5): five fields, lists, ranges, steps, month and day names, 0 and 7 Sunday, the day-of-month / day-of-week OR rule, @hourly @daily @weekly @monthly @yearly @reboot) and the kt command line after `--` exactly as kt parses it, and that the --gpg-recipient keys resolve in the service account\'s keyring; either refused (exit 2) leaves the file as it was. The entry runs with --quiet and its stdout dropped, so cron mails only failures'
complete -c kt -n "__fish_kt_using_subcommand schedule; and __fish_seen_subcommand_from help" -f -a "list" -d 'List the entries, their commands and their next 5 runs (local time)'
complete -c kt -n "__fish_kt_using_subcommand schedule; and __fish_seen_subcommand_from help" -f -a "remove" -d 'Remove an entry by name'
complete -c kt -n "__fish_kt_using_subcommand schedule; and __fish_seen_subcommand_from help" -f -a "next" -d 'Show when a cron expression would run (checking it as add does)'
complete -c kt -n "__fish_kt_using_subcommand schedule; and __fish_seen_subcommand_from help" -f -a "run" -d 'Run the entries in the foreground, at their times, without cron (for containers): one run at a time, a missed run run once, never twice. SIGTERM or SIGINT waits for a running backup, then exits 0'
complete -c kt -n "__fish_kt_using_subcommand schedule; and __fish_seen_subcommand_from help" -f -a "systemd" -d 'Print a systemd .service + .timer pair that runs an entry at the same times (OnCalendar=), or write them with --install'
complete -c kt -n "__fish_kt_using_subcommand schedule; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c kt -n "__fish_kt_using_subcommand mail; and not __fish_seen_subcommand_from queue test help" -s c -l confdir -d 'The instance\'s configuration directory' -r -F
complete -c kt -n "__fish_kt_using_subcommand mail; and not __fish_seen_subcommand_from queue test help" -s q -l quiet -d 'Print nothing but data and errors'
complete -c kt -n "__fish_kt_using_subcommand mail; and not __fish_seen_subcommand_from queue test help" -s v -l verbose -d 'Print more about what kt does'
complete -c kt -n "__fish_kt_using_subcommand mail; and not __fish_seen_subcommand_from queue test help" -l no-progress -d 'Never show progress bars, even on a terminal'
complete -c kt -n "__fish_kt_using_subcommand mail; and not __fish_seen_subcommand_from queue test help" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c kt -n "__fish_kt_using_subcommand mail; and not __fish_seen_subcommand_from queue test help" -s V -l version -d 'Print version'
complete -c kt -n "__fish_kt_using_subcommand mail; and not __fish_seen_subcommand_from queue test help" -f -a "queue" -d 'List the messages not sent yet and why: state (queued, or failed: given up), attempts, the last error and when the next attempt is due'
complete -c kt -n "__fish_kt_using_subcommand mail; and not __fish_seen_subcommand_from queue test help" -f -a "test" -d 'Send a signed test message now, through the configured transport, and print the MTA\'s answer. Exit 3 when the MTA refuses it or cannot be reached. The message does not go through the queue'
complete -c kt -n "__fish_kt_using_subcommand mail; and not __fish_seen_subcommand_from queue test help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c kt -n "__fish_kt_using_subcommand mail; and __fish_seen_subcommand_from queue" -s c -l confdir -d 'The instance\'s configuration directory' -r -F
complete -c kt -n "__fish_kt_using_subcommand mail; and __fish_seen_subcommand_from queue" -l all -d 'Include the sent messages still kept (30 days), with the MTA\'s answer'
complete -c kt -n "__fish_kt_using_subcommand mail; and __fish_seen_subcommand_from queue" -l json -d 'Print JSON'
complete -c kt -n "__fish_kt_using_subcommand mail; and __fish_seen_subcommand_from queue" -s q -l quiet -d 'Print nothing but data and errors'
complete -c kt -n "__fish_kt_using_subcommand mail; and __fish_seen_subcommand_from queue" -s v -l verbose -d 'Print more about what kt does'
complete -c kt -n "__fish_kt_using_subcommand mail; and __fish_seen_subcommand_from queue" -l no-progress -d 'Never show progress bars, even on a terminal'
complete -c kt -n "__fish_kt_using_subcommand mail; and __fish_seen_subcommand_from queue" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c kt -n "__fish_kt_using_subcommand mail; and __fish_seen_subcommand_from queue" -s V -l version -d 'Print version'
complete -c kt -n "__fish_kt_using_subcommand mail; and __fish_seen_subcommand_from test" -l to -d 'The address to send to' -r
complete -c kt -n "__fish_kt_using_subcommand mail; and __fish_seen_subcommand_from test" -s c -l confdir -d 'The instance\'s configuration directory' -r -F
complete -c kt -n "__fish_kt_using_subcommand mail; and __fish_seen_subcommand_from test" -s q -l quiet -d 'Print nothing but data and errors'
complete -c kt -n "__fish_kt_using_subcommand mail; and __fish_seen_subcommand_from test" -s v -l verbose -d 'Print more about what kt does'
complete -c kt -n "__fish_kt_using_subcommand mail; and __fish_seen_subcommand_from test" -l no-progress -d 'Never show progress bars, even on a terminal'
complete -c kt -n "__fish_kt_using_subcommand mail; and __fish_seen_subcommand_from test" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c kt -n "__fish_kt_using_subcommand mail; and __fish_seen_subcommand_from test" -s V -l version -d 'Print version'
complete -c kt -n "__fish_kt_using_subcommand mail; and __fish_seen_subcommand_from help" -f -a "queue" -d 'List the messages not sent yet and why: state (queued, or failed: given up), attempts, the last error and when the next attempt is due'
complete -c kt -n "__fish_kt_using_subcommand mail; and __fish_seen_subcommand_from help" -f -a "test" -d 'Send a signed test message now, through the configured transport, and print the MTA\'s answer. Exit 3 when the MTA refuses it or cannot be reached. The message does not go through the queue'
complete -c kt -n "__fish_kt_using_subcommand mail; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c kt -n "__fish_kt_using_subcommand help; and not __fish_seen_subcommand_from init db fingerprint serve server org client backup verify restore cert ha schedule mail help" -f -a "init" -d 'Create a new instance: configuration, keys, certificate and database'
complete -c kt -n "__fish_kt_using_subcommand help; and not __fish_seen_subcommand_from init db fingerprint serve server org client backup verify restore cert ha schedule mail help" -f -a "db" -d 'Control the instance\'s PostgreSQL database'
complete -c kt -n "__fish_kt_using_subcommand help; and not __fish_seen_subcommand_from init db fingerprint serve server org client backup verify restore cert ha schedule mail help" -f -a "fingerprint" -d 'Print the server\'s OpenPGP key fingerprint, as `/?a=fingerprint` answers'
complete -c kt -n "__fish_kt_using_subcommand help; and not __fish_seen_subcommand_from init db fingerprint serve server org client backup verify restore cert ha schedule mail help" -f -a "serve" -d 'Run the key server in the foreground (HTTPS, port 11371 by default)'
complete -c kt -n "__fish_kt_using_subcommand help; and not __fish_seen_subcommand_from init db fingerprint serve server org client backup verify restore cert ha schedule mail help" -f -a "server" -d 'Run the key server in the background, like an init script'
complete -c kt -n "__fish_kt_using_subcommand help; and not __fish_seen_subcommand_from init db fingerprint serve server org client backup verify restore cert ha schedule mail help" -f -a "org" -d 'Manage organizations and their clients (the documented keytrustee-orgtool)'
complete -c kt -n "__fish_kt_using_subcommand help; and not __fish_seen_subcommand_from init db fingerprint serve server org client backup verify restore cert ha schedule mail help" -f -a "client" -d 'A reference client of the key server: register, then store, fetch, list and delete deposits'
complete -c kt -n "__fish_kt_using_subcommand help; and not __fish_seen_subcommand_from init db fingerprint serve server org client backup verify restore cert ha schedule mail help" -f -a "backup" -d 'Back up the confdir and the database into one encrypted archive'
complete -c kt -n "__fish_kt_using_subcommand help; and not __fish_seen_subcommand_from init db fingerprint serve server org client backup verify restore cert ha schedule mail help" -f -a "verify" -d 'Check that the key server and its backups are sound (read-only)'
complete -c kt -n "__fish_kt_using_subcommand help; and not __fish_seen_subcommand_from init db fingerprint serve server org client backup verify restore cert ha schedule mail help" -f -a "restore" -d 'Restore a backup: the confdir and the database, safely'
complete -c kt -n "__fish_kt_using_subcommand help; and not __fish_seen_subcommand_from init db fingerprint serve server org client backup verify restore cert ha schedule mail help" -f -a "cert" -d 'Generate, replace, show and check the server\'s TLS certificate'
complete -c kt -n "__fish_kt_using_subcommand help; and not __fish_seen_subcommand_from init db fingerprint serve server org client backup verify restore cert ha schedule mail help" -f -a "ha" -d 'High availability: an active and a passive server, PostgreSQL streaming replication between them'
complete -c kt -n "__fish_kt_using_subcommand help; and not __fish_seen_subcommand_from init db fingerprint serve server org client backup verify restore cert ha schedule mail help" -f -a "schedule" -d 'Schedule backups: checked cron entries, their next runs, a foreground runner for hosts without cron, and systemd timers'
complete -c kt -n "__fish_kt_using_subcommand help; and not __fish_seen_subcommand_from init db fingerprint serve server org client backup verify restore cert ha schedule mail help" -f -a "mail" -d 'Contact mail: the outbox and the MTA'
complete -c kt -n "__fish_kt_using_subcommand help; and not __fish_seen_subcommand_from init db fingerprint serve server org client backup verify restore cert ha schedule mail help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c kt -n "__fish_kt_using_subcommand help; and __fish_seen_subcommand_from db" -f -a "start" -d 'Start the database in the background and wait until it accepts connections'
complete -c kt -n "__fish_kt_using_subcommand help; and __fish_seen_subcommand_from db" -f -a "stop" -d 'Stop the database (fast shutdown) and wait until it is down'
complete -c kt -n "__fish_kt_using_subcommand help; and __fish_seen_subcommand_from db" -f -a "status" -d 'Show whether the database runs, with its pid, port and data directory'
complete -c kt -n "__fish_kt_using_subcommand help; and __fish_seen_subcommand_from server" -f -a "start" -d 'Start the server and wait until it answers over HTTPS'
complete -c kt -n "__fish_kt_using_subcommand help; and __fish_seen_subcommand_from server" -f -a "stop" -d 'Stop the server gracefully (SIGTERM) and wait until it has exited'
complete -c kt -n "__fish_kt_using_subcommand help; and __fish_seen_subcommand_from server" -f -a "restart" -d 'Stop the server, then start it again'
complete -c kt -n "__fish_kt_using_subcommand help; and __fish_seen_subcommand_from server" -f -a "reload" -d 'Reload the certificate, key and CA (SIGHUP) without a restart'
complete -c kt -n "__fish_kt_using_subcommand help; and __fish_seen_subcommand_from server" -f -a "status" -d 'Show whether the server runs; exits 1 when it does not'
complete -c kt -n "__fish_kt_using_subcommand help; and __fish_seen_subcommand_from org" -f -a "add" -d 'Add an organization with a random auth secret, or add contacts to an existing one'
complete -c kt -n "__fish_kt_using_subcommand help; and __fish_seen_subcommand_from org" -f -a "invite" -d 'Mail contacts of an organization a new registration link (theirs expired, was used, or never arrived); their older unused links stop working'
complete -c kt -n "__fish_kt_using_subcommand help; and __fish_seen_subcommand_from org" -f -a "list" -d 'Print every organization as JSON (auth_secret, contacts, creation, expiration, key_info, name, state, uuid), keyed by name'
complete -c kt -n "__fish_kt_using_subcommand help; and __fish_seen_subcommand_from org" -f -a "set-auth" -d 'Set an organization\'s auth secret; an empty secret (-s "") approves every new client automatically'
complete -c kt -n "__fish_kt_using_subcommand help; and __fish_seen_subcommand_from org" -f -a "enable-client" -d 'Approve a client that awaits approval, or allow a disabled client to act again'
complete -c kt -n "__fish_kt_using_subcommand help; and __fish_seen_subcommand_from org" -f -a "deny-client" -d 'Refuse a client that awaits approval: its registration is removed (it may ask again later)'
complete -c kt -n "__fish_kt_using_subcommand help; and __fish_seen_subcommand_from org" -f -a "disable-client" -d 'Refuse every further request of a client'
complete -c kt -n "__fish_kt_using_subcommand help; and __fish_seen_subcommand_from org" -f -a "clients" -d 'Print the clients (of one organization, or all) as JSON, with their state (active, disabled, pending), the host name each gave (claimed_host: the client\'s claim, not verified) and registration time'
complete -c kt -n "__fish_kt_using_subcommand help; and __fish_seen_subcommand_from client" -f -a "register" -d 'Create a key and register it with an organization'
complete -c kt -n "__fish_kt_using_subcommand help; and __fish_seen_subcommand_from client" -f -a "put" -d 'Store a new deposit from FILE (or standard input); prints its UUID'
complete -c kt -n "__fish_kt_using_subcommand help; and __fish_seen_subcommand_from client" -f -a "get" -d 'Write a deposit to standard output'
complete -c kt -n "__fish_kt_using_subcommand help; and __fish_seen_subcommand_from client" -f -a "list" -d 'List this client\'s deposits as JSON'
complete -c kt -n "__fish_kt_using_subcommand help; and __fish_seen_subcommand_from client" -f -a "delete" -d 'Delete a deposit'
complete -c kt -n "__fish_kt_using_subcommand help; and __fish_seen_subcommand_from client" -f -a "status" -d 'Show this client\'s fingerprint, organization, state and servers'
complete -c kt -n "__fish_kt_using_subcommand help; and __fish_seen_subcommand_from client" -f -a "bench" -d 'Send a bounded load of signed requests and report throughput and latency'
complete -c kt -n "__fish_kt_using_subcommand help; and __fish_seen_subcommand_from backup" -f -a "list" -d 'List the backups in a directory, newest first, with size, age, encryption and the recipients\' key IDs'
complete -c kt -n "__fish_kt_using_subcommand help; and __fish_seen_subcommand_from verify" -f -a "backup" -d 'Check that a backup file is whole, signed by the server and restorable'
complete -c kt -n "__fish_kt_using_subcommand help; and __fish_seen_subcommand_from cert" -f -a "generate" -d 'Make a key, a certificate signing request or a certificate'
complete -c kt -n "__fish_kt_using_subcommand help; and __fish_seen_subcommand_from cert" -f -a "replace" -d 'Put a new certificate in place in a running server, with no downtime'
complete -c kt -n "__fish_kt_using_subcommand help; and __fish_seen_subcommand_from cert" -f -a "rollback" -d 'Put the certificate saved in .ssl.bak back in place, the same checked way as `kt cert replace` (the current one goes to .ssl.bak in turn)'
complete -c kt -n "__fish_kt_using_subcommand help; and __fish_seen_subcommand_from cert" -f -a "show" -d 'Show a certificate: subject, names, issuer, validity, fingerprint, key, chain'
complete -c kt -n "__fish_kt_using_subcommand help; and __fish_seen_subcommand_from cert" -f -a "check" -d 'Check the instance\'s certificate, for monitoring and cron'
complete -c kt -n "__fish_kt_using_subcommand help; and __fish_seen_subcommand_from ha" -f -a "sync" -d 'Copy files and directories as rsync does, locally or to or from another host'
complete -c kt -n "__fish_kt_using_subcommand help; and __fish_seen_subcommand_from ha" -f -a "enable" -d 'Prepare the active\'s database for a passive at PEER'
complete -c kt -n "__fish_kt_using_subcommand help; and __fish_seen_subcommand_from ha" -f -a "disable" -d 'Undo `kt ha enable`: the role, the files and the settings it added'
complete -c kt -n "__fish_kt_using_subcommand help; and __fish_seen_subcommand_from ha" -f -a "init-passive" -d 'Make this host the passive: copy the active\'s database and stream from it'
complete -c kt -n "__fish_kt_using_subcommand help; and __fish_seen_subcommand_from ha" -f -a "enable-sync" -d 'Turn on synchronous replication: a commit waits until the passive has applied it'
complete -c kt -n "__fish_kt_using_subcommand help; and __fish_seen_subcommand_from ha" -f -a "disable-sync" -d 'Turn off synchronous replication (e.g. while the passive is rebuilt)'
complete -c kt -n "__fish_kt_using_subcommand help; and __fish_seen_subcommand_from ha" -f -a "status" -d 'Show this host\'s HA role, its peer and the replication state'
complete -c kt -n "__fish_kt_using_subcommand help; and __fish_seen_subcommand_from schedule" -f -a "add" -d 'Add an entry: check the cron expression (crontab(5): five fields, lists, ranges, steps, month and day names, 0 and 7 Sunday, the day-of-month / day-of-week OR rule, @hourly @daily @weekly @monthly @yearly @reboot) and the kt command line after `--` exactly as kt parses it, and that the --gpg-recipient keys resolve in the service account\'s keyring; either refused (exit 2) leaves the file as it was. The entry runs with --quiet and its stdout dropped, so cron mails only failures'
complete -c kt -n "__fish_kt_using_subcommand help; and __fish_seen_subcommand_from schedule" -f -a "list" -d 'List the entries, their commands and their next 5 runs (local time)'
complete -c kt -n "__fish_kt_using_subcommand help; and __fish_seen_subcommand_from schedule" -f -a "remove" -d 'Remove an entry by name'
complete -c kt -n "__fish_kt_using_subcommand help; and __fish_seen_subcommand_from schedule" -f -a "next" -d 'Show when a cron expression would run (checking it as add does)'
complete -c kt -n "__fish_kt_using_subcommand help; and __fish_seen_subcommand_from schedule" -f -a "run" -d 'Run the entries in the foreground, at their times, without cron (for containers): one run at a time, a missed run run once, never twice. SIGTERM or SIGINT waits for a running backup, then exits 0'
complete -c kt -n "__fish_kt_using_subcommand help; and __fish_seen_subcommand_from schedule" -f -a "systemd" -d 'Print a systemd .service + .timer pair that runs an entry at the same times (OnCalendar=), or write them with --install'
complete -c kt -n "__fish_kt_using_subcommand help; and __fish_seen_subcommand_from mail" -f -a "queue" -d 'List the messages not sent yet and why: state (queued, or failed: given up), attempts, the last error and when the next attempt is due'
complete -c kt -n "__fish_kt_using_subcommand help; and __fish_seen_subcommand_from mail" -f -a "test" -d 'Send a signed test message now, through the configured transport, and print the MTA\'s answer. Exit 3 when the MTA refuses it or cannot be reached. The message does not go through the queue'
