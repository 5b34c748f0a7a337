//! Secret prompts on the terminal: rpassword reads without echo, and a
//! signal handler puts the terminal back as it was if Ctrl-C (or SIGTERM,
//! SIGQUIT) ends the process during the prompt. rpassword restores the
//! terminal only when its read returns; on Ctrl-C it raises SIGINT first,
//! and the default action would end the process with echo still off.

use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::OnceLock;

use kt::storage::pgpass::Password;

/// The terminal and its settings before the first prompt, for the handler.
static TTY_FD: AtomicI32 = AtomicI32::new(-1);
static SAVED: OnceLock<libc::termios> = OnceLock::new();

const SIGNALS: [libc::c_int; 3] = [libc::SIGINT, libc::SIGTERM, libc::SIGQUIT];

/// Asks for a secret on the controlling terminal, without echo.
pub fn password(prompt: &str) -> kt::Result<Password> {
    let tty = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/tty")
        .map_err(|e| kt::Error::env("no terminal to ask the password on").because_err(&e))?;
    let fd = tty.as_raw_fd();
    // SAFETY: termios is plain data, filled in by tcgetattr on an open fd.
    let mut current: libc::termios = unsafe { std::mem::zeroed() };
    if unsafe { libc::tcgetattr(fd, &mut current) } != 0 {
        return Err(kt::Error::env("cannot read the terminal settings").because_err(&std::io::Error::last_os_error()));
    }
    let _ = SAVED.set(current);
    TTY_FD.store(fd, Ordering::SeqCst);
    let previous = install();
    let read = rpassword::prompt_password(prompt);
    restore(&previous);
    TTY_FD.store(-1, Ordering::SeqCst);
    drop(tty);
    let secret = read.map_err(|e| kt::Error::env("cannot read the password").because_err(&e))?;
    Ok(Password::new(secret))
}

/// Restores the terminal, then lets the signal do what it would have done.
extern "C" fn on_signal(signal: libc::c_int) {
    // Only async-signal-safe calls here: tcsetattr, write, signal, raise.
    let fd = TTY_FD.load(Ordering::SeqCst);
    if let (true, Some(saved)) = (fd >= 0, SAVED.get()) {
        // SAFETY: fd stays open while TTY_FD holds it; saved is initialised.
        unsafe {
            libc::tcsetattr(fd, libc::TCSANOW, saved);
            libc::write(fd, b"\n".as_ptr().cast(), 1);
        }
    }
    // SAFETY: back to the default action, then deliver the signal again.
    unsafe {
        libc::signal(signal, libc::SIG_DFL);
        libc::raise(signal);
    }
}

fn install() -> Vec<(libc::c_int, libc::sigaction)> {
    let mut previous = Vec::new();
    for signal in SIGNALS {
        // SAFETY: a zeroed sigaction with a plain handler and an empty mask
        // is valid; the old action is kept to be put back.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as usize;
            libc::sigemptyset(&mut action.sa_mask);
            let mut old: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(signal, &action, &mut old) == 0 {
                previous.push((signal, old));
            }
        }
    }
    previous
}

fn restore(previous: &[(libc::c_int, libc::sigaction)]) {
    for (signal, old) in previous {
        // SAFETY: putting back the action sigaction returned.
        unsafe { libc::sigaction(*signal, old, std::ptr::null_mut()) };
    }
}
