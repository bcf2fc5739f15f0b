//! The driver's side of its child processes: spawning a role (this bench binary re-executed
//! with `--role`) or the real ringgate binary, pinned to a CPU set between fork and exec;
//! reading protocol lines with a deadline; and a Drop guard that always stops and reaps the
//! child, also when the driver unwinds from a panic. If the driver is killed outright, the
//! kernel kills the children (PR_SET_PDEATHSIG) and the roles also exit on a closed stdin.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

use crate::sys;

/// How long a child gets to exit on its own (closed stdin, or SIGTERM) before SIGKILL.
const GRACE: Duration = Duration::from_secs(2);

pub struct ChildProcess {
    name: String,
    child: Child,
    /// Our roles stop when this closes; `None` for external programs, which get SIGTERM.
    stdin: Option<ChildStdin>,
    /// External programs run in their own process group, signalled as a whole, so anything
    /// they started goes down with them.
    own_group: bool,
    lines: Option<Receiver<String>>,
}

/// Makes the command's child pin itself to `cpus` and die with the driver, before it execs.
fn pin_before_exec(command: &mut Command, cpus: &[usize]) {
    let cpus = cpus.to_vec();
    // SAFETY: the hook runs in the forked child before exec, where only async-signal-safe
    // calls are allowed. `die_with_parent` and `pin_to_cpus` each make one syscall and allocate
    // nothing; `cpus` was allocated before the fork and is only read.
    unsafe {
        command.pre_exec(move || {
            sys::die_with_parent()?;
            sys::pin_to_cpus(&cpus)
        })
    };
}

impl ChildProcess {
    /// Starts `role` by re-executing this bench binary, speaking the control protocol over
    /// stdin/stdout; its stderr is the driver's, so its diagnostics reach the terminal.
    pub fn role(role: &str, args: &[String], cpus: &[usize]) -> Result<ChildProcess, String> {
        let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
        let mut command = Command::new(exe);
        command
            .arg("--role")
            .arg(role)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        pin_before_exec(&mut command, cpus);
        let mut child = command.spawn().map_err(|e| format!("spawn {role}: {e}"))?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("stdout was piped");
        let (sender, lines) = channel();
        std::thread::spawn(move || {
            // Ends at EOF, when the child exits.
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        Ok(ChildProcess {
            name: role.to_string(),
            child,
            stdin,
            own_group: false,
            lines: Some(lines),
        })
    }

    /// Starts an external program with stdout and stderr going to `log`, so its logging never
    /// interleaves with the table and is there to read when it fails.
    pub fn external(
        name: &str,
        program: &Path,
        args: &[String],
        cpus: &[usize],
        log: &Path,
    ) -> Result<ChildProcess, String> {
        let log_file = File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
        let log_clone = log_file
            .try_clone()
            .map_err(|e| format!("{}: {e}", log.display()))?;
        let mut command = Command::new(program);
        command
            .args(args)
            .stdin(Stdio::null())
            .stdout(log_file)
            .stderr(log_clone)
            .process_group(0);
        pin_before_exec(&mut command, cpus);
        let child = command
            .spawn()
            .map_err(|e| format!("spawn {}: {e}", program.display()))?;
        Ok(ChildProcess {
            name: name.to_string(),
            child,
            stdin: None,
            own_group: true,
            lines: None,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The exit status if the child has already exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Waits up to `timeout` for the next line starting with `keyword` and returns it whole.
    pub fn expect(&mut self, keyword: &str, timeout: Duration) -> Result<String, String> {
        let deadline = Instant::now() + timeout;
        let lines = self
            .lines
            .as_ref()
            .ok_or_else(|| format!("{} has no control channel", self.name))?;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match lines.recv_timeout(left) {
                Ok(line) if line.split_whitespace().next() == Some(keyword) => return Ok(line),
                Ok(line) => eprintln!("{}: unexpected line `{line}`", self.name),
                Err(RecvTimeoutError::Timeout) => {
                    return Err(format!(
                        "{} said no `{keyword}` within {timeout:?}",
                        self.name
                    ));
                }
                Err(RecvTimeoutError::Disconnected) => {
                    let status = self.child.wait().map_err(|e| e.to_string())?;
                    return Err(format!(
                        "{} exited ({status}) before `{keyword}`",
                        self.name
                    ));
                }
            }
        }
    }

    /// Sends `command` and waits for the answer line starting with `keyword`.
    pub fn ask(
        &mut self,
        command: &str,
        keyword: &str,
        timeout: Duration,
    ) -> Result<String, String> {
        let stdin = self
            .stdin
            .as_mut()
            .ok_or_else(|| format!("{} has no control channel", self.name))?;
        writeln!(stdin, "{command}")
            .and_then(|()| stdin.flush())
            .map_err(|e| format!("{} did not take `{command}`: {e}", self.name))?;
        self.expect(keyword, timeout)
    }
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        if self.exited().is_some() {
            return;
        }
        // Ask politely first: roles exit when their stdin closes, programs on SIGTERM.
        if self.stdin.take().is_none() {
            self.signal(libc::SIGTERM);
        }
        let deadline = Instant::now() + GRACE;
        while Instant::now() < deadline {
            if self.exited().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        eprintln!(
            "{}: still running {GRACE:?} after being asked to stop; killing",
            self.name
        );
        self.signal(libc::SIGKILL);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl ChildProcess {
    /// Signals the child, or its whole process group when it has its own.
    fn signal(&self, signal: libc::c_int) {
        let _ = if self.own_group {
            sys::signal_group(self.child.id(), signal)
        } else {
            sys::send_signal(self.child.id(), signal)
        };
    }
}
