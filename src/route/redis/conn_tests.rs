//! A connection's handshake, reply matching and backoff, fed bytes by hand.

use super::*;

fn handshake(password: Option<&str>, db: i64) -> Handshake {
    Handshake {
        username: None,
        password: password.map(|p| Secret(p.into())),
        db,
        ..Handshake::plain("udp_gate:disconnect")
    }
}

fn feed(conn: &mut Conn, bytes: &[u8]) -> Result<Vec<Event>, Failure> {
    let mut events = Vec::new();
    conn.received(bytes, &mut events).map(|()| events)
}

const PING: &[u8] = b"*1\r\n$4\r\nPING\r\n";

/// Connects a plain command connection and answers its PING.
fn ready_command() -> Conn {
    let mut c = Conn::new(Role::Command);
    c.connected(&handshake(None, 0));
    c.take_output();
    assert_eq!(feed(&mut c, b"+PONG\r\n").unwrap(), [Event::Ready]);
    c
}

#[test]
fn a_plain_command_connection_pings_then_is_ready() {
    let mut c = Conn::new(Role::Command);
    c.connecting();
    assert_eq!(c.connected(&handshake(None, 0)), None);
    assert_eq!(c.take_output(), PING);
    assert!(!c.get("k"), "no GET before the handshake finished");
    assert_eq!(feed(&mut c, b"+PONG\r\n").unwrap(), [Event::Ready]);
    assert!(c.get("k"));
    assert_eq!(c.take_output(), b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n");
    assert_eq!(feed(&mut c, b"$10\r\n10.0.0.1:").unwrap(), []);
    assert_eq!(
        feed(&mut c, b"1\r\n").unwrap(),
        [Event::Got(Value::BulkString(b"10.0.0.1:1".to_vec()))]
    );
}

#[test]
fn auth_and_select_come_first_and_replies_match_in_order() {
    let mut c = Conn::new(Role::Command);
    assert_eq!(c.connected(&handshake(Some("pw"), 3)), None);
    let out = String::from_utf8(c.take_output()).unwrap();
    assert!(out.starts_with("*2\r\n$4\r\nAUTH\r\n$2\r\npw\r\n*2\r\n$6\r\nSELECT\r\n$1\r\n3"));
    assert!(out.ends_with(std::str::from_utf8(PING).unwrap()));
    assert!(!c.get("k"), "no GET before the handshake finished");
    assert_eq!(feed(&mut c, b"+OK\r\n").unwrap(), []);
    assert_eq!(feed(&mut c, b"+OK\r\n").unwrap(), []);
    assert_eq!(feed(&mut c, b"+PONG\r\n").unwrap(), [Event::Ready]);
    assert!(c.get("a") && c.get("b"));
    assert_eq!(c.gets_outstanding(), 2);
    let events = feed(&mut c, b"$-1\r\n$3\r\nx:1\r\n").unwrap();
    assert_eq!(
        events,
        [
            Event::Got(Value::Nil),
            Event::Got(Value::BulkString(b"x:1".to_vec()))
        ]
    );
}

#[test]
fn a_wrong_password_is_refused_without_echoing_it() {
    let mut c = Conn::new(Role::Command);
    c.connected(&handshake(Some("hunter2"), 0));
    let err = feed(&mut c, b"-WRONGPASS invalid username-password pair\r\n").unwrap_err();
    assert!(
        matches!(err, Failure::Refused { setting, .. } if setting.starts_with("REDIS_PASSWORD"))
    );
    assert!(!err.to_string().contains("hunter2"));
    assert!(!format!("{:?}", handshake(Some("hunter2"), 0)).contains("hunter2"));
}

#[test]
fn a_subscriber_subscribes_then_reports_messages() {
    let mut c = Conn::new(Role::Subscriber);
    assert_eq!(c.connected(&handshake(None, 5)), None);
    let out = String::from_utf8(c.take_output()).unwrap();
    assert!(
        out.contains("SUBSCRIBE") && !out.contains("SELECT"),
        "{out}"
    );
    let confirm = b"*3\r\n$9\r\nsubscribe\r\n$19\r\nudp_gate:disconnect\r\n:1\r\n";
    assert_eq!(feed(&mut c, confirm).unwrap(), [Event::Ready]);
    let msg = b"*3\r\n$7\r\nmessage\r\n$19\r\nudp_gate:disconnect\r\n$5\r\n40123\r\n";
    assert_eq!(
        feed(&mut c, msg).unwrap(),
        [Event::Message {
            channel: b"udp_gate:disconnect".to_vec(),
            payload: Some(b"40123".to_vec())
        }]
    );
    assert!(!c.get("k"), "a subscriber does not GET");
}

#[test]
fn an_unexpected_reply_is_a_protocol_failure() {
    let mut c = Conn::new(Role::Command);
    c.connected(&handshake(None, 0));
    assert!(matches!(feed(&mut c, b":1\r\n"), Err(Failure::Protocol(_))));
}

#[test]
fn a_password_nobody_gave_is_refused_at_the_handshake_not_at_the_first_lookup() {
    let mut c = Conn::new(Role::Command);
    c.connected(&handshake(None, 0));
    let err = feed(&mut c, b"-NOAUTH Authentication required.\r\n").unwrap_err();
    assert!(
        matches!(err, Failure::Refused { setting, .. } if setting.starts_with("REDIS_PASSWORD")),
        "{err}"
    );
    let mut c = Conn::new(Role::Command);
    c.connected(&handshake(None, 99));
    let err = feed(&mut c, b"-ERR DB index is out of range\r\n").unwrap_err();
    assert!(err.to_string().contains("REDIS_DB"), "{err}");
}

#[test]
fn unsent_bytes_go_back_in_front() {
    let mut c = ready_command();
    c.get("a");
    let out = c.take_output();
    c.get("b");
    c.unsent(&out[4..]);
    let again = c.take_output();
    assert!(again.starts_with(&out[4..]));
    assert!(again.ends_with(b"$1\r\nb\r\n"));
}

/// Whether `got` is `nominal` jittered down by at most half.
fn jittered(got: Duration, nominal: Duration) -> bool {
    got <= nominal && got >= nominal / 2
}

#[test]
fn backoff_doubles_to_a_cap_jittered_and_resets_after_a_whole_handshake() {
    let mut c = Conn::new(Role::Command);
    let delays: Vec<_> = (0..10).map(|_| c.reset().1).collect();
    assert!(jittered(delays[0], Duration::from_millis(50)), "{delays:?}");
    assert!(
        jittered(delays[1], Duration::from_millis(100)),
        "{delays:?}"
    );
    assert!(jittered(delays[9], Duration::from_secs(5)), "{delays:?}");
    // Accepting the connection is not enough (protected mode, maxclients)...
    c.connected(&handshake(None, 0));
    assert!(jittered(c.reset().1, Duration::from_secs(5)));
    // ...nor is answering some of the handshake and refusing the rest...
    c.connected(&handshake(Some("pw"), 0));
    feed(&mut c, b"+OK\r\n").unwrap();
    assert!(feed(&mut c, b"-NOAUTH\r\n").is_err());
    assert!(jittered(c.reset().1, Duration::from_secs(5)));
    // ...accepting all of it is.
    c.connected(&handshake(None, 0));
    feed(&mut c, b"+PONG\r\n").unwrap();
    assert!(jittered(c.reset().1, Duration::from_millis(50)));
}

#[test]
fn jitter_spreads_reconnects() {
    let mut c = Conn::new(Role::Command);
    let mut seen = std::collections::HashSet::new();
    for _ in 0..20 {
        seen.insert(c.jittered(Duration::from_secs(5)));
    }
    assert!(seen.len() > 10, "{seen:?}");
}

#[test]
fn reset_reports_lost_gets() {
    let mut c = ready_command();
    c.get("a");
    c.get("a");
    assert_eq!(c.reset().0, 2);
    assert_eq!(c.phase(), Phase::Down);
    assert!(!c.has_output());
}

/// A handshake behind Sentinel, for master `mymaster`.
fn behind_sentinel() -> Handshake {
    Handshake {
        master: Some("mymaster".into()),
        instance_channel: Some("udp_gate:disconnect:a".into()),
        ..handshake(None, 0)
    }
}

const MASTER_ROLE: &[u8] = b"*3\r\n$6\r\nmaster\r\n:0\r\n*0\r\n";

#[test]
fn behind_sentinel_a_data_connection_checks_role_first() {
    let mut c = Conn::new(Role::Command);
    assert_eq!(c.connected(&behind_sentinel()), None);
    let out = String::from_utf8(c.take_output()).unwrap();
    assert!(out.starts_with("*1\r\n$4\r\nROLE\r\n"), "{out}");
    assert_eq!(feed(&mut c, MASTER_ROLE).unwrap(), []);
    assert_eq!(feed(&mut c, b"+PONG\r\n").unwrap(), [Event::Ready]);

    let mut replica = Conn::new(Role::Command);
    replica.connected(&behind_sentinel());
    let slave = b"*5\r\n$5\r\nslave\r\n$9\r\n127.0.0.1\r\n:6379\r\n$9\r\nconnected\r\n:1\r\n";
    assert!(matches!(
        feed(&mut replica, slave),
        Err(Failure::NotMaster(why)) if why.contains("slave")
    ));
}

#[test]
fn a_sentinel_handshake_does_not_restart_the_backoff_by_itself() {
    let sentinel = Handshake {
        master: Some("mymaster".into()),
        ..Handshake::plain("+switch-master")
    };
    let mut c = Conn::new(Role::Sentinel);
    for _ in 0..4 {
        c.reset();
    }
    c.connected(&sentinel);
    // "No such master" and the subscription, in one read.
    let replies = b"$-1\r\n*3\r\n$9\r\nsubscribe\r\n$14\r\n+switch-master\r\n:1\r\n";
    assert_eq!(
        feed(&mut c, replies).unwrap(),
        [Event::Master(None), Event::Ready]
    );
    // The fifth failure waits 800 ms less up to half of it, not the first 50 ms.
    let (_, delay) = c.reset();
    assert!(delay >= Duration::from_millis(400), "{delay:?}");
}

#[test]
fn readonly_or_masterdown_in_any_reply_means_not_the_master() {
    for error in [
        &b"-READONLY You can't write against a read only replica.\r\n"[..],
        b"-MASTERDOWN Link with MASTER is down\r\n",
    ] {
        let mut c = ready_command();
        assert!(c.write("k", Some(("v", 10))));
        assert!(matches!(feed(&mut c, error), Err(Failure::NotMaster(_))));
    }
}

#[test]
fn a_sentinel_connection_asks_for_the_master_then_listens_for_switches() {
    let mut c = Conn::new(Role::Sentinel);
    let sentinel = Handshake {
        password: Some(Secret("spw".into())),
        master: Some("mymaster".into()),
        ..Handshake::plain("+switch-master")
    };
    assert_eq!(c.connected(&sentinel), None);
    let out = String::from_utf8(c.take_output()).unwrap();
    let auth = out.find("AUTH").unwrap();
    let ask = out.find("get-master-addr-by-name").unwrap();
    let sub = out.find("SUBSCRIBE").unwrap();
    assert!(auth < ask && ask < sub && out.contains("mymaster"), "{out}");
    assert!(!c.get("k") && !c.command(&redis::cmd("PING")));
    let replies = b"+OK\r\n*2\r\n$9\r\n127.0.0.1\r\n$4\r\n6380\r\n*3\r\n$9\r\nsubscribe\r\n$14\r\n+switch-master\r\n:1\r\n";
    assert_eq!(
        feed(&mut c, replies).unwrap(),
        [
            Event::Master(Some(("127.0.0.1".into(), 6380))),
            Event::Ready
        ]
    );
    let switch = b"*3\r\n$7\r\nmessage\r\n$14\r\n+switch-master\r\n$38\r\nmymaster 127.0.0.1 6380 127.0.0.1 6381\r\n";
    assert!(matches!(
        &feed(&mut c, switch).unwrap()[..],
        [Event::Message { payload: Some(p), .. }] if p.ends_with(b"6381")
    ));
    // A sentinel that does not know the master answers null.
    let mut c = Conn::new(Role::Sentinel);
    c.connected(&sentinel);
    assert_eq!(
        feed(&mut c, b"+OK\r\n$-1\r\n").unwrap(),
        [Event::Master(None)]
    );
    // A port that is not one is a protocol error, not a master.
    let mut c = Conn::new(Role::Sentinel);
    c.connected(&sentinel);
    let bad = b"+OK\r\n*2\r\n$9\r\n127.0.0.1\r\n$1\r\n0\r\n";
    assert!(matches!(feed(&mut c, bad), Err(Failure::Protocol(_))));
}

#[test]
fn a_subscriber_takes_both_channels_and_skips_an_oversize_message() {
    let mut c = Conn::new(Role::Subscriber);
    c.connected(&behind_sentinel());
    c.take_output();
    assert_eq!(feed(&mut c, MASTER_ROLE).unwrap(), []);
    let first = b"*3\r\n$9\r\nsubscribe\r\n$19\r\nudp_gate:disconnect\r\n:1\r\n";
    assert_eq!(feed(&mut c, first).unwrap(), []);
    let second = b"*3\r\n$9\r\nsubscribe\r\n$21\r\nudp_gate:disconnect:a\r\n:2\r\n";
    assert_eq!(feed(&mut c, second).unwrap(), [Event::Ready]);
    let big = "9".repeat(2000);
    let oversize = format!(
        "*3\r\n$7\r\nmessage\r\n$21\r\nudp_gate:disconnect:a\r\n${}\r\n{big}\r\n",
        big.len()
    );
    let small = b"*3\r\n$7\r\nmessage\r\n$21\r\nudp_gate:disconnect:a\r\n$4\r\n4000\r\n";
    let mut bytes = oversize.into_bytes();
    bytes.extend_from_slice(small);
    assert_eq!(
        feed(&mut c, &bytes).unwrap(),
        [
            Event::Message {
                channel: b"udp_gate:disconnect:a".to_vec(),
                payload: None
            },
            Event::Message {
                channel: b"udp_gate:disconnect:a".to_vec(),
                payload: Some(b"4000".to_vec())
            }
        ]
    );
}
