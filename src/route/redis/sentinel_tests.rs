//! The sentinel connection's rounds, generations and switch messages.

use super::*;
use crate::sys::driver::{Backend, Driver, DriverConfig};

fn driver() -> Driver {
    Driver::new(&DriverConfig {
        backend: Backend::Epoll,
        sq_entries: 8,
        cq_entries: 64,
        buffer_count: 2,
        payload_bytes: 64,
        headroom: 0,
        recv_destination: false,
        tick: std::time::Duration::from_secs(1),
        task_run: crate::sys::uring::TaskRun::Deferred,
        streams: 1,
        stream_rx_bytes: 64,
        timers: 0,
    })
    .unwrap()
}

fn three() -> Sentinels {
    let place = |port| Place {
        addr: SocketAddr::from(([127, 0, 0, 1], port)),
        host: None,
    };
    Sentinels {
        places: vec![place(1), place(2), place(3)],
        master: "mymaster".into(),
        handshake: Handshake::plain(SWITCH_CHANNEL),
    }
}

#[test]
fn sentinels_are_asked_in_turn_and_the_backoff_grows_from_round_to_round() {
    let mut driver = driver();
    let mut counters = Counters::default();
    let t0 = Instant::now();
    let mut s = Sentinel::new(three(), 0, t0);
    let mut waits = Vec::new();
    for round in 0..3 {
        for i in 0..3 {
            assert_eq!(s.current().port(), i + 1, "round {round}");
            s.fail("refused", &mut driver.streams(), t0, &mut counters);
            let wait = s.end.retry_at().unwrap() - t0;
            if i < 2 {
                assert!(wait.is_zero(), "the next sentinel at once");
            } else {
                waits.push(wait);
            }
        }
    }
    assert_eq!(counters.get(Counter::RedisSentinelFailures), 9);
    // 50 ms doubling per failure, jittered down by up to half: after 3, 6, 9 failures.
    assert!(
        waits[0] >= std::time::Duration::from_millis(100),
        "{waits:?}"
    );
    assert!(
        waits[1] >= std::time::Duration::from_millis(800),
        "{waits:?}"
    );
    assert!(
        waits[2] >= std::time::Duration::from_millis(2500),
        "{waits:?}"
    );
}

#[test]
fn an_answer_on_a_connection_that_then_fails_does_not_restart_the_backoff() {
    let mut driver = driver();
    let mut counters = Counters::default();
    let t0 = Instant::now();
    let mut s = Sentinel::new(three(), 0, t0);
    let mut last = std::time::Duration::ZERO;
    for _ in 0..6 {
        // Each sentinel names the master, then refuses the SUBSCRIBE (-NOPERM).
        s.on_event(Event::Master(Some(("127.0.0.1".into(), 6379))));
        s.fail("NOPERM", &mut driver.streams(), t0, &mut counters);
        last = s.end.retry_at().unwrap() - t0;
    }
    assert!(last >= std::time::Duration::from_millis(800), "{last:?}");
}

#[test]
fn an_answer_is_a_generation_and_news_only_when_the_master_moved() {
    let mut s = Sentinel::new(three(), 0, Instant::now());
    assert!(!s.fresh(0));
    let a = || Event::Master(Some(("127.0.0.1".into(), 6379)));
    assert!(matches!(s.on_event(a()), Heard::Master(_)));
    assert!(s.fresh(0) && !s.fresh(1));
    assert_eq!(s.on_event(a()), Heard::Nothing, "the same master again");
    assert!(s.fresh(1), "but a newer answer all the same");
    let switch = Event::Message {
        channel: SWITCH_CHANNEL.into(),
        payload: Some(b"mymaster 127.0.0.1 6379 127.0.0.1 6380".to_vec()),
    };
    assert_eq!(
        s.on_event(switch),
        Heard::Master(Dest::Addr("127.0.0.1:6380".parse().unwrap()))
    );
    assert!(
        matches!(s.on_event(Event::Master(None)), Heard::Fail(why) if why.contains("REDIS_SENTINEL_MASTER"))
    );
}

#[test]
fn a_switch_message_names_the_new_master_of_our_master_only() {
    assert_eq!(
        switch(b"mymaster 127.0.0.1 6379 127.0.0.1 6380", "mymaster"),
        Some(Dest::Addr("127.0.0.1:6380".parse().unwrap()))
    );
    assert_eq!(
        switch(b"mymaster ::1 6379 ::1 6380", "mymaster"),
        Some(Dest::Addr("[::1]:6380".parse().unwrap()))
    );
    assert!(matches!(
        switch(b"mymaster a 1 redis-2.local 6379", "mymaster"),
        Some(Dest::Name(_))
    ));
    for bad in [
        &b"other 127.0.0.1 6379 127.0.0.1 6380"[..],
        b"mymaster 127.0.0.1 6379 127.0.0.1",
        b"mymaster 127.0.0.1 6379 127.0.0.1 0",
        b"mymaster 127.0.0.1 6379 127.0.0.1 70000",
        b"mymaster 1 2 bad/host 6379",
        b"\xff\xfe",
    ] {
        assert_eq!(switch(bad, "mymaster"), None, "{bad:?}");
    }
}
