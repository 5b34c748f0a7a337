//! `kt server start | stop | restart | reload | status`

use kt::daemon::{ServerProcess, ServerState};
use kt::error::Context;
use kt::instance::Layout;
use kt::server::ServerSettings;

use crate::cli::{GlobalArgs, ServerCommand};
use crate::printer::Printer;
use crate::{CommandResult, Status};

pub fn run(global: &GlobalArgs, command: ServerCommand, printer: &Printer) -> CommandResult {
    let instance = Layout::new(global.confdir.as_deref())?.load()?;
    let server = ServerProcess::for_instance(&instance)?;
    let exe = std::env::current_exe().env_context(|| "cannot find the kt executable")?;
    match command {
        ServerCommand::Start => {
            ServerSettings::from_instance(&instance)?;
            start(&server, &exe, printer)
        }
        ServerCommand::Stop => {
            stop(&server, printer)?;
            Ok(Status::Success)
        }
        ServerCommand::Restart => {
            // A configuration the new server would refuse stops here, with
            // the old server still serving.
            ServerSettings::from_instance(&instance)?;
            stop(&server, printer)?;
            start(&server, &exe, printer)
        }
        ServerCommand::Reload => {
            let pid = server.reload()?;
            printer.info(format!("kt: asked the server (pid {pid}) to reload its certificate; see {}", server.log_file.display()));
            Ok(Status::Success)
        }
        ServerCommand::Status => {
            let state = server.state()?;
            let url = server.probe_url();
            match state {
                ServerState::Running { pid } => {
                    printer.data("state:  running")?;
                    printer.data(format!("pid:    {pid}"))?;
                    printer.data(format!("listen: {}", server.listen))?;
                    printer.data(format!("url:    {url}"))?;
                    printer.data(format!("log:    {}", server.log_file.display()))?;
                    Ok(Status::Success)
                }
                ServerState::Stopped | ServerState::Stale { .. } => {
                    printer.data("state:  stopped")?;
                    printer.data(format!("listen: {}", server.listen))?;
                    printer.data(format!("log:    {}", server.log_file.display()))?;
                    if let ServerState::Stale { pid } = state {
                        printer.warn(format!("stale pid file {}: pid {pid} is not a running kt server", server.pid_file.display()));
                    }
                    Ok(Status::Problem)
                }
            }
        }
    }
}

fn start(server: &ServerProcess, exe: &std::path::Path, printer: &Printer) -> CommandResult {
    let (pid, already) = server.start(exe)?;
    if already {
        printer.info(format!("kt: the server is already running (pid {pid})"));
    } else {
        printer.info(format!("kt: the server is running (pid {pid}) at {}", server.probe_url()));
    }
    Ok(Status::Success)
}

fn stop(server: &ServerProcess, printer: &Printer) -> kt::Result<()> {
    match server.stop()? {
        Some(pid) => printer.info(format!("kt: the server is stopped (was pid {pid})")),
        None => printer.info("kt: the server is already stopped"),
    }
    Ok(())
}
