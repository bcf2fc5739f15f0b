//! The provided buffer ring: memory the kernel picks receive buffers from.
//!
//! Two anonymous mappings: the ring of `io_uring_buf` descriptors the kernel consumes from its
//! head, and the buffers themselves (`entries` buffers, each `buf_len` bytes, 64-byte aligned).
//! ringgate writes descriptors at its local tail and publishes the tail with one release store
//! per batch ([`BufRing::publish`]). A buffer is *leased* from the moment a completion names it
//! until [`BufRing::recycle`] gives it back; the lease bitmap makes "back exactly once" a checked
//! property rather than a hope, and is what makes handing out `&[u8]` views sound: the kernel
//! writes only into buffers that are in the ring, never into leased ones.

use std::io;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU16, Ordering};

/// `struct io_uring_buf` from `<linux/io_uring.h>`. In the first entry, `resv` is the ring's tail.
#[repr(C)]
struct RawBuf {
    addr: u64,
    len: u32,
    bid: u16,
    resv: u16,
}

/// Byte offset of the tail inside the ring: `offsetof(struct io_uring_buf_ring, tail)`.
const TAIL_OFFSET: usize = 14;
/// Buffers start on a cache line so that a payload does not share one with its neighbour.
const BUF_ALIGN: usize = 64;
/// The kernel's limit on a buffer ring's size (`io_uring_register_pbuf_ring`).
pub const ENTRIES_MAX: u32 = 1 << 15;

/// An anonymous private mapping, unmapped on drop.
struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
}

impl Mapping {
    fn new(len: usize) -> io::Result<Mapping> {
        // SAFETY: an anonymous private mapping of `len` bytes at an address the kernel picks
        // touches no existing memory; the result is checked against MAP_FAILED below.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr =
            NonNull::new(ptr.cast::<u8>()).ok_or_else(|| io::Error::other("mmap gave null"))?;
        Ok(Mapping { ptr, len })
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` are exactly what mmap returned and nothing refers to the mapping
        // any more: `BufRing` is dropped after the ring that could write into it (see
        // `sys::driver::Driver`'s field order and its drain-or-leak rule).
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

pub struct BufRing {
    ring: Mapping,
    bufs: Mapping,
    entries: u16,
    buf_len: u32,
    stride: usize,
    local_tail: u16,
    leased: Vec<u64>,
    leased_count: u32,
}

impl BufRing {
    /// Maps a ring of `entries` (a power of two, at most [`ENTRIES_MAX`]) buffers of `buf_len`
    /// bytes, every buffer initially given to the kernel (published on the first `publish`).
    pub fn new(entries: u32, buf_len: u32) -> io::Result<BufRing> {
        if !entries.is_power_of_two() || entries > ENTRIES_MAX {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("buffer ring size {entries} is not a power of two up to {ENTRIES_MAX}"),
            ));
        }
        let page = 4096;
        let ring_len = (entries as usize * size_of::<RawBuf>()).next_multiple_of(page);
        let stride = (buf_len as usize).next_multiple_of(BUF_ALIGN);
        let mut ring = BufRing {
            ring: Mapping::new(ring_len)?,
            bufs: Mapping::new(entries as usize * stride)?,
            // `entries` is at most 2^15, so it fits; the tail arithmetic wraps at 2^16.
            entries: entries as u16,
            buf_len,
            stride,
            local_tail: 0,
            leased: vec![!0u64; (entries as usize).div_ceil(64)],
            leased_count: entries,
        };
        for bid in 0..entries {
            ring.recycle(bid as u16);
        }
        Ok(ring)
    }

    /// The ring's address and size, for `IORING_REGISTER_PBUF_RING`.
    pub fn registration(&self) -> (u64, u16) {
        (self.ring.ptr.as_ptr() as u64, self.entries)
    }

    pub fn buf_len(&self) -> u32 {
        self.buf_len
    }

    /// Buffers ringgate holds (leased) right now; the kernel has the rest.
    pub fn leased(&self) -> u32 {
        self.leased_count
    }

    pub fn entries(&self) -> u32 {
        u32::from(self.entries)
    }

    fn is_leased(&self, bid: u16) -> bool {
        bid < self.entries && self.leased[bid as usize / 64] & (1 << (bid as usize % 64)) != 0
    }

    /// Records that a completion handed `bid` to ringgate. False if `bid` is out of range or
    /// already leased (a kernel or bookkeeping bug: the caller must not use the buffer).
    pub fn take(&mut self, bid: u16) -> bool {
        if bid >= self.entries || self.is_leased(bid) {
            return false;
        }
        self.leased[bid as usize / 64] |= 1 << (bid as usize % 64);
        self.leased_count += 1;
        true
    }

    /// The first `len` bytes of leased buffer `bid`; `None` if it is not leased or `len` is
    /// more than the buffer holds.
    pub fn get(&self, bid: u16, len: usize) -> Option<&[u8]> {
        if !self.is_leased(bid) || len > self.buf_len as usize {
            return None;
        }
        // SAFETY: `bid < entries` (leased implies in range), so the range lies inside the
        // `bufs` mapping; the kernel writes only into buffers in the ring, and a leased buffer is
        // not in the ring until `recycle`, which takes `&mut self` and so cannot overlap this
        // borrow.
        Some(unsafe {
            std::slice::from_raw_parts(self.bufs.ptr.as_ptr().add(bid as usize * self.stride), len)
        })
    }

    /// Copies `bytes` into leased buffer `bid` at `offset` (a prefix written into the headroom
    /// before a payload); false, changing nothing, if it is not leased or they do not fit.
    pub fn write(&mut self, bid: u16, offset: usize, bytes: &[u8]) -> bool {
        let Some(end) = offset.checked_add(bytes.len()) else {
            return false;
        };
        if !self.is_leased(bid) || end > self.buf_len as usize {
            return false;
        }
        // SAFETY: `bid < entries` (leased implies in range) and `end <= buf_len`, so the range
        // lies inside buffer `bid` in the `bufs` mapping; a leased buffer is not in the ring, so
        // the kernel does not write it, and `&mut self` excludes any other view of it.
        unsafe {
            let at = self
                .bufs
                .ptr
                .as_ptr()
                .add(bid as usize * self.stride + offset);
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), at, bytes.len());
        }
        true
    }

    /// The address of `len` bytes at `offset` in leased buffer `bid`, for a send that reads
    /// them; `None` if the buffer is not leased or the range does not fit in it.
    pub(super) fn range(&self, bid: u16, offset: usize, len: usize) -> Option<*const u8> {
        let end = offset.checked_add(len)?;
        self.get(bid, end).map(|b| b[offset..].as_ptr())
    }

    /// Gives leased buffer `bid` back to the kernel (visible after the next `publish`).
    /// Returns false, changing nothing, if `bid` was not leased.
    pub fn recycle(&mut self, bid: u16) -> bool {
        if !self.is_leased(bid) {
            return false;
        }
        self.leased[bid as usize / 64] &= !(1 << (bid as usize % 64));
        self.leased_count -= 1;
        let index = (self.local_tail & (self.entries - 1)) as usize;
        let addr = self.bufs.ptr.as_ptr() as u64 + (bid as usize * self.stride) as u64;
        // SAFETY: `index < entries`, so the descriptor lies inside the `ring` mapping. Only the
        // `addr`, `len` and `bid` fields are written, through raw field pointers, so the tail
        // the kernel reads (the `resv` of entry 0) is never covered by a Rust reference. The
        // kernel does not read descriptors at or past the published tail, and this one is.
        unsafe {
            let entry = self.ring.ptr.as_ptr().cast::<RawBuf>().add(index);
            std::ptr::addr_of_mut!((*entry).addr).write(addr);
            std::ptr::addr_of_mut!((*entry).len).write(self.buf_len);
            std::ptr::addr_of_mut!((*entry).bid).write(bid);
        }
        self.local_tail = self.local_tail.wrapping_add(1);
        true
    }

    /// Makes every recycled buffer visible to the kernel.
    pub fn publish(&self) {
        // SAFETY: the tail is a naturally aligned u16 at TAIL_OFFSET inside the page-aligned
        // ring mapping, which outlives `self`; the kernel reads it concurrently, which is why it
        // is only ever accessed atomically. Release orders the descriptor writes before it.
        let tail = unsafe { AtomicU16::from_ptr(self.ring.ptr.as_ptr().add(TAIL_OFFSET).cast()) };
        tail.store(self.local_tail, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_go_back_exactly_once() {
        let mut ring = BufRing::new(8, 100).unwrap();
        assert_eq!(ring.leased(), 0);
        assert!(
            ring.get(3, 10).is_none(),
            "a buffer the kernel owns is not readable"
        );
        assert!(ring.take(3));
        assert!(!ring.take(3), "leased twice");
        assert_eq!(ring.get(3, 100).map(<[u8]>::len), Some(100));
        assert!(ring.get(3, 101).is_none());
        assert!(ring.recycle(3));
        assert!(!ring.recycle(3), "recycled twice");
        assert!(!ring.take(8), "out of range");
        assert!(ring.get(8, 1).is_none(), "out of range");
        assert!(ring.take(0));
        assert!(ring.write(0, 95, b"hello"));
        assert_eq!(&ring.get(0, 100).unwrap()[95..], b"hello");
        assert!(!ring.write(0, 96, b"hello"), "past the end");
        assert!(!ring.write(5, 0, b"x"), "not leased");
        assert!(ring.range(0, 90, 10).is_some());
        assert!(ring.range(0, 90, 11).is_none());
        assert!(ring.recycle(0));
        assert_eq!(ring.leased(), 0);
    }

    #[test]
    fn rejects_sizes_the_kernel_rejects() {
        assert!(BufRing::new(3, 64).is_err());
        assert!(BufRing::new(ENTRIES_MAX * 2, 64).is_err());
    }
}
