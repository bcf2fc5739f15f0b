//! Process limits ringgate raises at start-up.

use std::io;

use super::cvt;

/// Raises the soft `RLIMIT_NOFILE` to the hard limit (each session holds one socket). Returns
/// the soft limit in force afterwards.
pub fn raise_nofile() -> io::Result<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid, writable rlimit for the call's duration.
    cvt(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) })?;
    if lim.rlim_cur < lim.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: lim.rlim_max,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: `raised` is a valid rlimit that the kernel only reads.
        cvt(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) })?;
        lim.rlim_cur = lim.rlim_max;
    }
    Ok(lim.rlim_cur)
}
