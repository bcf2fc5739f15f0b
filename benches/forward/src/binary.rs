//! Where the driver finds what cargo built: the profile directory it runs from, the ringgate
//! build it measures by default (`ringgate` in that directory, as `cargo build --release` leaves
//! it), whether that build is current, and `target/bench` for the results.
//!
//! The driver is a crate of its own, so cargo does not build ringgate for it: a build older
//! than the tree would be measured in its place without a word. Cargo's dep-info beside the
//! binary lists every file it was built from; one modified since is refused with the fix.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// What to do when the default build is missing or stale.
const FIX: &str = "run `cargo build --release` first, or name a build with --ringgate PATH";

/// The cargo profile directory the driver was built into: it runs as
/// `<target>/release/deps/forward-<hash>` under `cargo bench` and as
/// `<target>/release/ringgate-bench` when run as the binary.
fn profile_dir() -> Result<PathBuf, String> {
    let exe =
        std::env::current_exe().map_err(|e| format!("finding the driver's executable: {e}"))?;
    let dir = exe.parent().unwrap_or(Path::new("/"));
    let dir = match dir.file_name() {
        Some(name) if name == "deps" => dir.parent().unwrap_or(dir),
        _ => dir,
    };
    Ok(dir.to_path_buf())
}

/// `<target>/bench`, where the ringgate logs and forward.json go unless `--output-dir` says.
pub fn output_dir() -> Result<PathBuf, String> {
    let profile = profile_dir()?;
    let target = profile.parent().unwrap_or(&profile);
    Ok(target.join("bench"))
}

/// The ringgate build measured by default: `ringgate` beside the driver's build.
pub fn default_ringgate() -> Result<PathBuf, String> {
    Ok(profile_dir()?.join("ringgate"))
}

/// Whether `binary` exists and is at least as new as every file cargo built it from.
pub fn check_current(binary: &Path) -> Result<(), String> {
    let missing =
        |e: std::io::Error| format!("no ringgate build at {} ({e}): {FIX}", binary.display());
    let built = modified(binary).map_err(missing)?;
    let depinfo = binary.with_extension("d");
    let text = std::fs::read_to_string(&depinfo).map_err(|e| {
        format!(
            "{}: {e}; cannot tell whether {} is current: {FIX}",
            depinfo.display(),
            binary.display()
        )
    })?;
    match sources(&text)
        .into_iter()
        .find(|source| modified(source).is_ok_and(|m| m > built))
    {
        Some(newer) => Err(format!(
            "{} is older than {}: {FIX}",
            binary.display(),
            newer.display()
        )),
        None => Ok(()),
    }
}

fn modified(path: &Path) -> std::io::Result<SystemTime> {
    std::fs::metadata(path)?.modified()
}

/// The files a Makefile-style dep-info names after each `TARGET:`, as cargo writes them: one
/// rule a line, paths separated by spaces, a space inside a path escaped with `\`.
fn sources(depinfo: &str) -> Vec<PathBuf> {
    let mut paths = Vec::new();
    for line in depinfo.lines() {
        let Some((_, files)) = line.split_once(": ") else {
            continue;
        };
        let (mut path, mut chars) = (String::new(), files.chars());
        while let Some(c) = chars.next() {
            match c {
                '\\' => path.extend(chars.next()),
                ' ' if path.is_empty() => {}
                ' ' => paths.push(PathBuf::from(std::mem::take(&mut path))),
                c => path.push(c),
            }
        }
        if !path.is_empty() {
            paths.push(PathBuf::from(path));
        }
    }
    paths
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn dep_info_paths_keep_their_escaped_spaces() {
        let text = "/t/release/ringgate: /r/src/main.rs /r/my\\ dir/lib.rs\n\n/r/src/x.rs:\n";
        let expected = ["/r/src/main.rs", "/r/my dir/lib.rs"].map(PathBuf::from);
        assert_eq!(sources(text), expected);
    }

    #[test]
    fn a_build_older_than_a_source_is_refused_with_the_fix() {
        let dir =
            std::env::temp_dir().join(format!("ringgate-bench-binary-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (binary, source) = (dir.join("ringgate"), dir.join("lib.rs"));
        let depinfo = format!("{}: {}\n", binary.display(), source.display());
        std::fs::write(binary.with_extension("d"), depinfo).unwrap();
        let at = |path: &Path, secs: u64| {
            let file = std::fs::File::create(path).unwrap();
            file.set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
                .unwrap();
        };
        assert!(
            check_current(&binary)
                .unwrap_err()
                .contains("cargo build --release")
        );
        at(&binary, 2_000);
        at(&source, 1_000);
        assert_eq!(check_current(&binary), Ok(()));
        at(&source, 3_000);
        let error = check_current(&binary).unwrap_err();
        assert!(
            error.contains("is older than") && error.contains("cargo build --release"),
            "{error}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
