//! The driver's child processes and the line protocol it speaks with them, both sides.
//!
//! Every child is this bench binary re-executed with `--role NAME --cpus LIST`: the role pins
//! itself to its CPUs and asks the kernel to kill it when the driver dies before doing anything
//! else. ringgate is started the same way, through the `exec` role, which then becomes ringgate
//! (same pid, same CPUs, same death signal). So no child is ever pinned between fork and exec.
//!
//! A role reads commands from stdin, a line each, and answers on stdout with one line, a
//! keyword and a JSON object: `ready {...}` once serving, `snap {...}` for counters, `report
//! {...}` for final figures; diagnostics go to stderr. A role exits when its stdin closes and
//! after `--max-secs` whatever happens, so none outlives the run that started it. On the
//! driver's side a guard stops and reaps every child however the driver returns.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::cli::CpuList;
use crate::os;

/// How long a child gets to exit on its own (closed stdin, or SIGTERM) before SIGKILL.
const GRACE: Duration = Duration::from_secs(2);

/// What every role takes besides its own options.
#[derive(clap::Args, Clone, Debug)]
pub struct RoleArgs {
    /// CPUs for this role; its i-th busy thread is pinned to the i-th, cycling
    #[arg(long, value_name = "LIST")]
    pub cpus: CpuList,
    /// Exit after this long even if the driver never says stop
    #[arg(long, value_name = "SECS", default_value_t = 600)]
    pub max_secs: u64,
    /// Run in this network namespace (`/run/netns/NAME`, the XDP testbed's), entered first
    #[arg(long, value_name = "NAME")]
    pub netns: Option<String>,
    /// The address the role's listening sockets bind (backend, baseline, floor)
    #[arg(long, value_name = "IP", default_value = "127.0.0.1")]
    pub listen_ip: std::net::IpAddr,
}

impl RoleArgs {
    /// Dies with the driver, enters its namespace and pins the whole process, before any
    /// thread starts (a thread inherits its creator's namespace).
    pub fn enter(&self) -> Result<(), String> {
        os::die_with_parent().map_err(|e| format!("PR_SET_PDEATHSIG: {e}"))?;
        if let Some(name) = &self.netns {
            os::enter_netns(name).map_err(|e| format!("entering network namespace {name}: {e}"))?;
        }
        os::pin(&self.cpus.0).map_err(|e| format!("pinning to CPUs {}: {e}", self.cpus))
    }

    /// Pins the calling thread, the role's `index`-th busy one, to one CPU of the role's.
    pub fn pin_thread(&self, index: usize) {
        let cpu = self.cpus.0[index % self.cpus.0.len()];
        if let Err(e) = os::pin(&[cpu]) {
            eprintln!(
                "role: thread {index} stays on CPUs {} ({cpu}: {e})",
                self.cpus
            );
        }
    }

    pub fn lifetime(&self) -> Duration {
        Duration::from_secs(self.max_secs)
    }
}

/// `--role exec --cpus LIST -- PROGRAM ARGS...`: becomes PROGRAM, pinned, dying with the driver.
#[derive(clap::Args, Debug)]
pub struct ExecArgs {
    #[command(flatten)]
    role: RoleArgs,
    #[arg(last = true, required = true, value_name = "PROGRAM")]
    command: Vec<String>,
}

pub fn exec(args: ExecArgs) -> Result<(), String> {
    args.role.enter()?;
    let error = Command::new(&args.command[0])
        .args(&args.command[1..])
        .exec();
    Err(format!("exec {}: {error}", args.command[0]))
}

/// Prints one protocol line. A driver that stopped reading is gone, and so is this role soon.
pub fn say(keyword: &str, value: &impl Serialize) {
    let json = serde_json::to_string(value).expect("protocol values serialize");
    let _ = writeln!(std::io::stdout(), "{keyword} {json}");
}

/// Runs `handle` on a thread for every command line on stdin, and ends the process when stdin
/// closes or after `lifetime`, whichever comes first.
pub fn serve_commands(lifetime: Duration, mut handle: impl FnMut(&str) + Send + 'static) {
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines().map_while(Result::ok) {
            handle(line.trim());
        }
        std::process::exit(0);
    });
    std::thread::spawn(move || {
        std::thread::sleep(lifetime);
        eprintln!("role: lifetime of {lifetime:?} exceeded, exiting");
        std::process::exit(3);
    });
}

pub struct Child {
    name: String,
    child: std::process::Child,
    /// Roles stop when this closes; `None` for programs, which get SIGTERM.
    stdin: Option<ChildStdin>,
    lines: Option<Receiver<String>>,
}

fn role_command(role: &str, cpus: &[usize]) -> Result<Command, String> {
    let mut command =
        Command::new(std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?);
    command.args([
        "--role",
        role,
        "--cpus",
        &CpuList(cpus.to_vec()).to_string(),
    ]);
    Ok(command)
}

impl Child {
    /// Starts `role` on `cpus`, speaking the protocol over stdin/stdout; its stderr is the
    /// driver's, so its diagnostics reach the terminal.
    pub fn role(role: &str, cpus: &[usize], args: &[String]) -> Result<Child, String> {
        let mut command = role_command(role, cpus)?;
        command
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped());
        let mut child = command.spawn().map_err(|e| format!("spawn {role}: {e}"))?;
        let (stdin, stdout) = (child.stdin.take(), child.stdout.take().expect("piped"));
        let (sender, lines) = channel();
        // Ends at EOF, when the child exits.
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines().map_while(Result::ok);
            lines.try_for_each(|line| sender.send(line))
        });
        Ok(Child {
            name: role.into(),
            child,
            stdin,
            lines: Some(lines),
        })
    }

    /// Starts `program` on `cpus` in its own process group (signalled as a whole), its stdout
    /// and stderr in `log` so its logging never interleaves with the table.
    pub fn program(
        name: &str,
        program: &Path,
        args: &[String],
        cpus: &[usize],
        log: &Path,
    ) -> Result<Child, String> {
        let log_error = |e: std::io::Error| format!("{}: {e}", log.display());
        let log_file = File::create(log).map_err(log_error)?;
        let log_too = log_file.try_clone().map_err(log_error)?;
        let mut command = role_command("exec", cpus)?;
        command.arg("--").arg(program).args(args);
        command
            .stdin(Stdio::null())
            .stdout(log_file)
            .stderr(log_too)
            .process_group(0);
        let child = command
            .spawn()
            .map_err(|e| format!("spawn {}: {e}", program.display()))?;
        Ok(Child {
            name: name.into(),
            child,
            stdin: None,
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

    /// Waits up to `timeout` for the next line starting with `keyword` and returns its value.
    pub fn expect<T: DeserializeOwned>(
        &mut self,
        keyword: &str,
        timeout: Duration,
    ) -> Result<T, String> {
        let deadline = Instant::now() + timeout;
        let lines = self
            .lines
            .as_ref()
            .ok_or_else(|| format!("{} has no control channel", self.name))?;
        loop {
            let line = match lines.recv_timeout(deadline.saturating_duration_since(Instant::now()))
            {
                Ok(line) => line,
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
            };
            match line.split_once(' ') {
                Some((word, json)) if word == keyword => {
                    return serde_json::from_str(json)
                        .map_err(|e| format!("{}: malformed `{keyword}`: {e}", self.name));
                }
                _ => eprintln!("{}: unexpected line `{line}`", self.name),
            }
        }
    }

    /// Sends `command` and waits for the answer line starting with `keyword`.
    pub fn ask<T: DeserializeOwned>(
        &mut self,
        command: &str,
        keyword: &str,
        timeout: Duration,
    ) -> Result<T, String> {
        let stdin = self
            .stdin
            .as_mut()
            .ok_or_else(|| format!("{} has no control channel", self.name))?;
        let sent = writeln!(stdin, "{command}").and_then(|()| stdin.flush());
        sent.map_err(|e| format!("{} did not take `{command}`: {e}", self.name))?;
        self.expect(keyword, timeout)
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        // Politely first: roles exit when their stdin closes, programs on SIGTERM.
        let group = Pid::from_raw(self.child.id() as i32);
        if self.exited().is_none() && self.stdin.take().is_none() {
            let _ = killpg(group, Signal::SIGTERM);
        }
        let deadline = Instant::now() + GRACE;
        while self.exited().is_none() {
            if Instant::now() >= deadline {
                eprintln!(
                    "{}: still running {GRACE:?} after being asked to stop; killing",
                    self.name
                );
                if self.lines.is_none() {
                    let _ = killpg(group, Signal::SIGKILL);
                }
                let _ = self.child.kill();
                let _ = self.child.wait();
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}
