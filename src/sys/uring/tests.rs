//! A ring built on this kernel: its modes, the driver's own cookies, a lent timer's life.

use super::*;

fn small() -> DriverConfig {
    DriverConfig {
        backend: crate::sys::driver::Backend::IoUring,
        sq_entries: 8,
        cq_entries: 64,
        buffer_count: 8,
        payload_bytes: 16,
        headroom: 0,
        recv_destination: false,
        tick: Duration::from_millis(10),
        task_run: TaskRun::Deferred,
        streams: 1,
        stream_rx_bytes: 64,
        timers: 1,
    }
}

#[test]
fn a_ring_builds_and_probes_on_this_kernel() {
    let driver = Ring::new(&small()).expect("ringgate's tests need io_uring (Linux 6.1+)");
    assert_eq!(driver.in_flight(), 0);
    assert_eq!(driver.bufs().leased(), 0);
}

#[test]
fn each_task_run_mode_is_built_as_asked_on_this_kernel() {
    // Linux 6.1+ accepts all three, so no fallback may happen here.
    for mode in TaskRun::ALL {
        let driver = Ring::new(&DriverConfig {
            task_run: mode,
            ..small()
        })
        .unwrap();
        assert_eq!(driver.task_run(), mode);
    }
}

#[test]
fn caller_values_with_the_driver_bit_are_refused() {
    let mut driver = Ring::new(&small()).unwrap();
    assert!(driver.tick(LENT_BIT | 1).is_err());
    assert_eq!(driver.in_flight(), 0);
}

#[test]
fn a_lent_timer_completes_once_and_is_free_again() {
    let mut driver = Ring::new(&small()).unwrap();
    driver.timer(0, Duration::from_millis(1), 7).unwrap();
    assert!(
        driver.timer(0, Duration::from_millis(1), 8).is_err(),
        "busy"
    );
    let mut batch = Vec::new();
    while batch.is_empty() {
        driver.submit_and_wait().unwrap();
        driver.reap(&mut batch);
    }
    assert_eq!(
        Lent::decode(batch[0].token()),
        Some(Lent {
            op: LentOp::Timer { timer: 0 },
            tag: 7
        })
    );
    assert_eq!(batch[0].result(), -libc::ETIME);
    assert_eq!(driver.in_flight(), 0);
    assert!(
        driver.timer(0, Duration::from_secs(60), 9).is_ok(),
        "free again"
    );
    assert!(driver.cancel_timer(0).is_ok());
    // The cancel and the cancelled timer both complete; nothing is left to leak.
    while driver.in_flight() > 0 {
        driver.submit_and_wait().unwrap();
        driver.reap(&mut batch);
    }
}

#[test]
fn the_probe_passes_on_this_kernel() {
    Ring::probe(&small()).expect("ringgate's tests need io_uring (Linux 6.1+)");
}
