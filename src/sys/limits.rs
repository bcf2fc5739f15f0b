//! Process and thread settings: the open-files limit, where a thread runs and at what
//! priority, and which addresses the host has.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

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

/// Grows this process's descriptor table to hold descriptor numbers up to `count` now (capped
/// by the open-files limit), by duplicating `fd` to a number at least that high and closing the
/// copy; the kernel never shrinks the table. Receiving thousands of descriptors at once (a
/// takeover) would otherwise grow it step by step, and in a process with several threads each
/// step waits for an RCU grace period: milliseconds each, while the old process is paused.
pub fn reserve_descriptors(fd: BorrowedFd<'_>, count: u64) -> io::Result<()> {
    let highest = count.min(nofile()?.saturating_sub(1));
    let Ok(highest) = libc::c_int::try_from(highest) else {
        return Ok(());
    };
    if highest <= 2 {
        return Ok(());
    }
    // SAFETY: `fd` is open for the call (it is borrowed); F_DUPFD_CLOEXEC only creates a new
    // descriptor, which the next line takes ownership of.
    let copy = cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, highest) })?;
    // SAFETY: `copy` was just created by the call above and nothing else knows it.
    drop(unsafe { OwnedFd::from_raw_fd(copy) });
    Ok(())
}

/// The soft `RLIMIT_NOFILE` in force.
pub fn nofile() -> io::Result<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid, writable rlimit for the call's duration.
    cvt(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) })?;
    Ok(lim.rlim_cur)
}

/// Clock ticks per second, the unit of `/proc/*/stat`'s times.
pub fn clock_ticks_per_second() -> u64 {
    // SAFETY: sysconf reads a constant of the C library; it takes no pointers.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(ticks).ok().filter(|&t| t > 0).unwrap_or(100)
}

/// The size of a memory page, the unit of `/proc/*/statm`.
pub fn page_size() -> u64 {
    // SAFETY: sysconf reads a constant of the C library; it takes no pointers.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(size).ok().filter(|&s| s > 0).unwrap_or(4096)
}

/// Lets the calling thread run only on `cpus`.
pub fn pin_current_thread(cpus: &[usize]) -> io::Result<()> {
    // SAFETY: cpu_set_t is a plain bit array for which all-zero is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    for &cpu in cpus {
        if cpu >= libc::CPU_SETSIZE as usize {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        // SAFETY: `cpu` is below CPU_SETSIZE (checked above), so the bit lies inside `set`.
        unsafe { libc::CPU_SET(cpu, &mut set) };
    }
    // SAFETY: `set` is a valid cpu_set_t of the size passed; pid 0 is the calling thread.
    cvt(unsafe { libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set) }).map(drop)
}

/// Gives the calling thread the lowest scheduling priority (nice 19), so it yields its CPU
/// to the threads it shares it with.
pub fn lower_current_thread() -> io::Result<()> {
    // SAFETY: gettid takes no arguments and cannot fail.
    let tid = unsafe { libc::gettid() };
    // SAFETY: setpriority reads its scalar arguments only; on Linux PRIO_PROCESS with a thread
    // id sets that thread's nice value.
    cvt(unsafe { libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, 19) }).map(drop)
}

/// The host's interface addresses (IPv4 and IPv6), as `getifaddrs` lists them.
pub fn local_addresses() -> io::Result<Vec<IpAddr>> {
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: `head` is a valid place for getifaddrs to store its list's address.
    cvt(unsafe { libc::getifaddrs(&mut head) })?;
    let mut out = Vec::new();
    let mut cursor = head;
    while !cursor.is_null() {
        // SAFETY: `cursor` is a non-null node of the list getifaddrs returned, which stays
        // valid until freeifaddrs below.
        let node = unsafe { &*cursor };
        if !node.ifa_addr.is_null() {
            // SAFETY: `ifa_addr` is non-null and points at a sockaddr whose family field
            // says which larger struct it is; each is read only after checking the family.
            unsafe {
                match i32::from((*node.ifa_addr).sa_family) {
                    libc::AF_INET => {
                        let sin = &*node.ifa_addr.cast::<libc::sockaddr_in>();
                        out.push(IpAddr::V4(Ipv4Addr::from(u32::from_be(
                            sin.sin_addr.s_addr,
                        ))));
                    }
                    libc::AF_INET6 => {
                        let sin6 = &*node.ifa_addr.cast::<libc::sockaddr_in6>();
                        out.push(IpAddr::V6(Ipv6Addr::from(sin6.sin6_addr.s6_addr)));
                    }
                    _ => {}
                }
            }
        }
        cursor = node.ifa_next;
    }
    // SAFETY: `head` came from getifaddrs and is freed once; no reference into it survives.
    unsafe { libc::freeifaddrs(head) };
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn making_room_for_descriptors_leaves_none_open() {
        // The copy goes to the lowest free number at or above the one asked for: with nothing
        // else that high, exactly it.
        let open = |n: u64| std::path::Path::new(&format!("/proc/self/fd/{n}")).exists();
        let file = std::fs::File::open("/proc/self/stat").unwrap();
        reserve_descriptors(std::os::fd::AsFd::as_fd(&file), 2_000).unwrap();
        assert!(!open(2_000));
        // Above the open-files limit it asks for the highest number the limit allows.
        reserve_descriptors(std::os::fd::AsFd::as_fd(&file), u64::MAX).unwrap();
        assert!(!open(nofile().unwrap() - 1));
    }

    #[test]
    fn the_host_has_a_loopback_address() {
        let addrs = local_addresses().unwrap();
        assert!(
            addrs.contains(&IpAddr::V4(Ipv4Addr::LOCALHOST)),
            "{addrs:?}"
        );
    }

    #[test]
    fn a_thread_can_be_pinned_and_lowered() {
        std::thread::spawn(|| {
            pin_current_thread(&[0]).unwrap();
            lower_current_thread().unwrap();
            assert!(pin_current_thread(&[usize::MAX]).is_err());
        })
        .join()
        .unwrap();
    }
}
