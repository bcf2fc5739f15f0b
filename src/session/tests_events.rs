//! What the table announces: each transition once, in order, and nothing for a session that
//! never opened.

use super::tests::{BACKEND, FIRST, Fake, addr, open, table};
use super::*;

fn events(t: &mut Sessions<Fake>) -> Vec<Event> {
    let mut out = Vec::new();
    t.take_events(&mut out);
    out
}

#[test]
fn a_session_announces_its_opening_its_confirmation_once_and_its_close() {
    let mut t = table(4, 8, 64);
    let key = t.insert(addr(1), 0, FIRST);
    assert_eq!(events(&mut t), [], "resolving is not announced");
    t.open(key, Fake(3), addr(40_001), BACKEND, None, 0)
        .unwrap();
    let opened = Event::Opened {
        key,
        client: addr(1),
        upstream: addr(40_001),
        backend: BACKEND,
    };
    assert_eq!(events(&mut t), [opened]);
    t.upstream(key, 1);
    t.reply_to(key, 1);
    assert_eq!(
        events(&mut t),
        [],
        "not confirmed until the client sends again"
    );
    t.upstream(key, 2);
    t.upstream(key, 3);
    let confirmed = Event::Confirmed {
        key,
        client: addr(1),
        local: None,
        upstream: addr(40_001),
        backend: BACKEND,
    };
    assert_eq!(events(&mut t), [confirmed], "once");
    t.begin_close(key, Why::Disconnect).unwrap();
    assert!(t.begin_close(key, Why::Idle).is_none());
    let closed = Event::Closed {
        key,
        client: addr(1),
        upstream: addr(40_001),
        backend: BACKEND,
        why: Why::Disconnect,
    };
    assert_eq!(
        events(&mut t),
        [closed],
        "closed once, with the first reason"
    );
}

#[test]
fn a_session_that_never_opened_closes_unannounced() {
    let mut t = table(4, 8, 64);
    let key = t.insert(addr(1), 0, FIRST);
    t.begin_close(key, Why::Abandoned).unwrap();
    assert_eq!(events(&mut t), []);
}

#[test]
fn events_come_in_the_order_things_happened_across_sessions() {
    let mut t = table(4, 8, 64);
    let a = open(&mut t, 1);
    let b = open(&mut t, 2);
    t.begin_close(a, Why::Evicted).unwrap();
    let kinds: Vec<(Key, &str)> = events(&mut t)
        .iter()
        .map(|e| match e {
            Event::Opened { key, .. } => (*key, "opened"),
            Event::Confirmed { key, .. } => (*key, "confirmed"),
            Event::Closed { key, .. } => (*key, "closed"),
        })
        .collect();
    assert_eq!(kinds, [(a, "opened"), (b, "opened"), (a, "closed")]);
}
