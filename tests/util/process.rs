//! A child process run to its end as a test runs it: no stdin, its output captured whole,
//! bounded in time. A child that outlives its patience is killed with its whole process group
//! (a script's children too) and fails the test.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::process::{Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// Runs `command` to its exit and returns its status and output; kills its process group and
/// fails the test if it takes longer than `patience`.
pub fn output(mut command: Command, patience: Duration) -> Output {
    let what = describe(&command);
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run `{what}`: {e}"));
    // Read while it runs, so a child that prints more than a pipe holds still exits.
    let reader = |mut pipe: Box<dyn Read + Send>| {
        thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes);
            bytes
        })
    };
    let stdout = reader(Box::new(child.stdout.take().unwrap()));
    let stderr = reader(Box::new(child.stderr.take().unwrap()));
    let deadline = Instant::now() + patience;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let group = format!("-{}", child.id());
            let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
            let _ = child.wait();
            panic!("`{what}` did not finish within {patience:?}; killed it");
        }
        thread::sleep(Duration::from_millis(5));
    };
    Output {
        status,
        stdout: stdout.join().unwrap(),
        stderr: stderr.join().unwrap(),
    }
}

/// The program and its arguments, as a shell line.
fn describe(command: &Command) -> String {
    let program = std::iter::once(command.get_program());
    let words = program.chain(command.get_args());
    let words: Vec<_> = words.map(|word| word.to_string_lossy()).collect();
    words.join(" ")
}

/// A finished child process, its output as text.
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    what: String,
}

impl Run {
    /// Runs `command` as [`output`] does.
    pub fn new(command: Command, patience: Duration) -> Run {
        let what = describe(&command);
        let out = output(command, patience);
        let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
        Run {
            code: out.status.code(),
            stdout: text(&out.stdout),
            stderr: text(&out.stderr),
            what,
        }
    }

    pub fn success(&self) -> bool {
        self.code == Some(0)
    }

    /// Everything the command printed, for assertion messages.
    pub fn transcript(&self) -> String {
        format!(
            "$ {}\nexit: {:?}\n--- stdout\n{}--- stderr\n{}",
            self.what, self.code, self.stdout, self.stderr
        )
    }

    pub fn assert_success(&self) -> &Self {
        assert!(self.success(), "command failed:\n{}", self.transcript());
        self
    }

    /// Fails the test, with the transcript, unless the command exited with `code`.
    pub fn assert_exit(&self, code: i32) -> &Self {
        assert_eq!(self.code, Some(code), "{}", self.transcript());
        self
    }
}
