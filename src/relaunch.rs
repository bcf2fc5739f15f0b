//! Starting the next ringgate for a takeover (SIGUSR2): the binary this process was started
//! from, by path (so that a package upgrade that replaced the file takes effect), with this
//! process's arguments and `--takeover` pointed at its control socket.

use std::ffi::{OsStr, OsString};
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// How this process was started, recorded at start (before the file can be replaced).
#[derive(Clone, Debug)]
pub struct Relaunch {
    exe: PathBuf,
    args: Vec<OsString>,
    /// Variables the next process must not inherit (it reads them again from their file).
    forget: Vec<String>,
}

impl Relaunch {
    /// This process's binary path and arguments.
    pub fn current() -> io::Result<Relaunch> {
        Ok(Relaunch {
            exe: std::env::current_exe()?,
            args: std::env::args_os().skip(1).collect(),
            forget: Vec::new(),
        })
    }

    /// The next process does not inherit `vars` (`RINGGATE_ENV_FILE`'s: it reads the file
    /// again, so a variable removed from it is gone).
    pub fn forgetting(mut self, vars: Vec<String>) -> Relaunch {
        self.forget = vars;
        self
    }

    pub fn exe(&self) -> &Path {
        &self.exe
    }

    /// The next process's arguments: these, without any takeover of their own, then
    /// `--takeover control`.
    pub fn args(&self, control: &Path) -> Vec<OsString> {
        let mut out = Vec::with_capacity(self.args.len() + 2);
        let mut args = self.args.iter();
        while let Some(arg) = args.next() {
            if arg == OsStr::new("--takeover") {
                args.next();
                continue;
            }
            if arg.as_encoded_bytes().starts_with(b"--takeover=") {
                continue;
            }
            out.push(arg.clone());
        }
        out.push("--takeover".into());
        out.push(control.into());
        out
    }

    /// Starts the next process; it inherits the environment (less `RINGGATE_TAKEOVER` and
    /// what is forgotten) and the standard output and error.
    pub fn spawn(&self, control: &Path) -> io::Result<Child> {
        let mut cmd = Command::new(&self.exe);
        cmd.args(self.args(control)).env_remove("RINGGATE_TAKEOVER");
        for var in &self.forget {
            cmd.env_remove(var);
        }
        cmd.stdin(Stdio::null()).spawn()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_next_process_takes_over_through_the_control_socket() {
        let r = Relaunch {
            exe: "/usr/bin/ringgate".into(),
            args: [
                "--workers",
                "2",
                "--takeover",
                "/old",
                "--takeover=/x",
                "--control",
                "/c",
            ]
            .map(OsString::from)
            .to_vec(),
            forget: Vec::new(),
        };
        let args: Vec<_> = r.args(Path::new("/c")).into_iter().collect();
        assert_eq!(
            args,
            ["--workers", "2", "--control", "/c", "--takeover", "/c"].map(OsString::from)
        );
    }
}
