//! The table under hostile traffic: confirmation, the unconfirmed list, evictions and their
//! slack, the unreplied timeout, the descriptor budget.

use super::tests::{BACKEND, FIRST, Fake, addr, confirmed, limits, open, table};
use super::*;
use crate::stats::Counter;

#[test]
fn a_session_is_confirmed_by_its_client_sending_after_an_answer() {
    let mut t = table(4, 8, 64);
    let key = open(&mut t, 1);
    t.upstream(key, 0);
    assert!(!t.confirmed(key), "the client alone proves nothing");
    t.reply_to(key, 0);
    assert!(
        !t.confirmed(key),
        "an answer the client may never have seen"
    );
    t.upstream(key, 0);
    assert!(t.confirmed(key));
    assert_eq!(t.oldest_unconfirmed(), None);
}

#[test]
fn a_full_table_evicts_the_oldest_unconfirmed_session() {
    let mut t = table(3, 8, 64);
    let old = open(&mut t, 1);
    confirmed(&mut t, 2);
    let young = open(&mut t, 3);
    assert_eq!(t.classify(&addr(4)), Ingress::Evict(old));
    t.begin_close(old, Why::Idle);
    let new = t.insert(addr(4), 0, FIRST);
    assert_eq!(t.classify(&addr(5)), Ingress::Evict(young));
    t.begin_close(young, Why::Idle);
    t.insert(addr(5), 0, FIRST);
    assert_eq!(t.classify(&addr(6)), Ingress::Evict(new), "oldest first");
}

#[test]
fn evicted_sessions_still_closing_take_bounded_room() {
    // Victims keep their slots until their operations complete; newcomers may use the slack
    // meanwhile, and no more.
    let mut t = table(1, 8, 1_000);
    let mut victims = 0;
    let mut port = 1;
    loop {
        let key = t.insert(addr(port), 0, FIRST);
        t.op_started(key);
        port += 1;
        match t.classify(&addr(port)) {
            Ingress::Evict(victim) => {
                t.begin_close(victim, Why::Idle);
                victims += 1;
            }
            Ingress::Full(reason) => {
                assert_eq!(reason, Counter::DropMaxSessions);
                break;
            }
            other => panic!("{other:?}"),
        }
        assert!(victims < 100, "unbounded");
    }
    assert_eq!(
        t.live(),
        1 + 16,
        "the cap plus its slack (1/8 of it, plus 16)"
    );
}

#[test]
fn unconfirmed_sessions_expire_oldest_first_after_the_unreplied_timeout() {
    let mut t = table(8, 8, 64);
    let a = t.insert(addr(1), 1, FIRST);
    let b = t.insert(addr(2), 2, FIRST);
    t.open(b, Fake(2), addr(40_002), BACKEND, None, 0);
    let c = t.insert(addr(3), 3, FIRST);
    t.open(c, Fake(3), addr(40_003), BACKEND, None, 0);
    t.reply_to(c, 3);
    t.upstream(c, 3);
    let mut out = Vec::new();
    t.collect_unreplied(2, &mut out);
    assert_eq!(out, [a]);
    out.clear();
    t.collect_unreplied(10, &mut out);
    assert_eq!(out, [a, b], "the confirmed one is not listed");
    t.begin_close(a, Why::Idle);
    out.clear();
    t.collect_unreplied(10, &mut out);
    assert_eq!(out, [b]);
}

#[test]
fn the_slack_for_evictions_never_eats_into_the_descriptor_reserve() {
    let plenty = limits(1_000, 8, 64);
    assert_eq!(
        plenty.caps(),
        (1_000, 1_000 + 125 + 16, Counter::DropMaxSessions)
    );
    let tight = Limits {
        fd_max: 120,
        ..plenty
    };
    let (max, hard, reason) = tight.caps();
    assert_eq!((hard, reason), (120, Counter::DropFdReserve));
    assert!(max + max / 8 + 16 <= 120 && max >= 90, "{max}");
    let none = Limits {
        fd_max: 10,
        ..plenty
    };
    assert_eq!(none.caps().0, 0);
}

#[test]
fn the_descriptor_budget_caps_sessions_with_its_own_reason() {
    let mut t: Sessions<Fake> = Sessions::new(Limits {
        fd_max: 1,
        ..limits(8, 8, 64)
    });
    confirmed(&mut t, 1);
    assert_eq!(t.classify(&addr(2)), Ingress::Full(Counter::DropFdReserve));
}
