//! Private GnuPG homes for decrypting with a given secret key file, and
//! the private scratch directories that hold them.

use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::error::{Error, Result};

/// A private directory (0700), removed with everything in it on drop,
/// after stopping any gpg-agent started for the GnuPG home inside it.
#[derive(Debug)]
pub struct PrivateDir(pub PathBuf);

impl PrivateDir {
    pub fn create(path: PathBuf) -> Result<PrivateDir> {
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&path)
            .map_err(|e| Error::env(format!("cannot create the private directory {}", path.display())).because_err(&e))?;
        Ok(PrivateDir(path))
    }

    /// The GnuPG home inside (`gnupg/`), created on first use.
    pub fn gnupg_home(&self) -> Result<PathBuf> {
        let home = self.0.join("gnupg");
        if !home.exists() {
            std::fs::DirBuilder::new()
                .mode(0o700)
                .create(&home)
                .map_err(|e| Error::env("cannot create a GnuPG home").because_err(&e))?;
        }
        Ok(home)
    }

    /// A GnuPG home holding only `key` (armored or binary secret key).
    pub fn import_secret_key(&self, key: &Path) -> Result<PathBuf> {
        let home = self.gnupg_home()?;
        let import = Command::new("gpg")
            .arg("--homedir")
            .arg(&home)
            .args(["--batch", "--no-tty", "--quiet", "--import"])
            .arg(key)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| Error::env("cannot run gpg").because_err(&e).with_hint("install GnuPG (gpg)"))?;
        if !import.status.success() {
            return Err(Error::usage(format!("cannot read the secret key {}", key.display()))
                .because(String::from_utf8_lossy(&import.stderr).trim().to_string()));
        }
        Ok(home)
    }
}

impl Drop for PrivateDir {
    fn drop(&mut self) {
        let home = self.0.join("gnupg");
        if home.exists() {
            let _ = Command::new("gpgconf").arg("--homedir").arg(&home).args(["--kill", "all"]).stderr(Stdio::null()).status();
        }
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
