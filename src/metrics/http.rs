//! The HTTP side: accepting, a cap on connections, timeouts, and the three endpoints.
//!
//! The endpoint must answer a health check while ringgate is under attack, so nothing a client
//! does can hold it: at most `connections_max` connections at once, and at the cap the oldest
//! that has not yet sent a whole request (a slowloris) is closed to admit the newcomer; a
//! connection that does not send its headers within [`HEADER_TIMEOUT`] is closed; every
//! connection serves one request and closes, and none lives past [`CONNECTION_TIMEOUT`]. An
//! accept error (EMFILE, ECONNABORTED, ...) is logged at most once a second and retried after a
//! pause.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::task::{AbortHandle, JoinSet};
use tracing::warn;

use crate::ratelimit::RateLimited;
use crate::stats::Shared;

/// How long a client may take to send its request headers.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest any connection lives.
pub const CONNECTION_TIMEOUT: Duration = Duration::from_secs(10);

pub type State = Arc<Shared>;

/// A connection being served.
struct Open {
    task: AbortHandle,
    /// Set once it sent a whole request.
    requested: Arc<AtomicBool>,
}

/// The connection to close for a newcomer at the cap: the oldest that has not sent a whole
/// request, else the oldest.
fn victim(requested: impl Iterator<Item = bool> + Clone) -> usize {
    requested.clone().position(|r| !r).unwrap_or(0)
}

/// The task a finished (or cancelled) connection ran in.
fn task_id(done: Result<(tokio::task::Id, ()), tokio::task::JoinError>) -> tokio::task::Id {
    match done {
        Ok((id, ())) => id,
        Err(e) => e.id(),
    }
}

/// Accepts until told to stop.
pub async fn serve(
    listener: std::net::TcpListener,
    state: State,
    connections_max: usize,
    mut stopped: tokio::sync::oneshot::Receiver<()>,
) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(listener) => listener,
        Err(e) => return warn!(error = %e, "metrics listener unusable"),
    };
    let mut warnings = RateLimited::default();
    let mut tasks = JoinSet::new();
    let mut open: VecDeque<Open> = VecDeque::new();
    loop {
        let accepted = tokio::select! {
            _ = &mut stopped => return,
            Some(done) = tasks.join_next_with_id(), if !tasks.is_empty() => {
                let id = task_id(done);
                open.retain(|c| c.task.id() != id);
                continue;
            }
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                if let Some(suppressed) = warnings.check() {
                    warn!(error = %e, suppressed, "metrics endpoint cannot accept; retrying");
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        if open.len() >= connections_max {
            let oldest = victim(open.iter().map(|c| c.requested.load(Ordering::Relaxed)));
            if let Some(closed) = open.remove(oldest) {
                closed.task.abort();
                // An abort only asks; the victim's socket closes when its task is reaped. Reap
                // it before accepting again, so the cap holds at every instant, not eventually.
                while let Some(done) = tasks.join_next_with_id().await {
                    let id = task_id(done);
                    open.retain(|c| c.task.id() != id);
                    if id == closed.task.id() {
                        break;
                    }
                }
            }
        }
        let requested = Arc::new(AtomicBool::new(false));
        let task = tasks.spawn(connection(
            stream,
            Arc::clone(&state),
            Arc::clone(&requested),
        ));
        open.push_back(Open { task, requested });
    }
}

async fn connection(stream: tokio::net::TcpStream, state: State, requested: Arc<AtomicBool>) {
    let service = service_fn(move |request| {
        requested.store(true, Ordering::Relaxed);
        let state = Arc::clone(&state);
        async move { Ok::<_, std::convert::Infallible>(respond(&request, &state)) }
    });
    let served = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .keep_alive(false)
        .serve_connection(TokioIo::new(stream), service);
    // A client that hangs up or stalls mid-request is not ringgate's problem.
    let _ = tokio::time::timeout(CONNECTION_TIMEOUT, served).await;
}

fn respond(request: &Request<Incoming>, state: &State) -> Response<Full<Bytes>> {
    let shared = &**state;
    let (status, content_type, body) = match request.uri().path() {
        "/metrics" => (
            StatusCode::OK,
            super::text::CONTENT_TYPE,
            super::collect::exposition(shared),
        ),
        "/healthz" => (StatusCode::OK, "text/plain", "ok\n".to_owned()),
        "/readyz" => {
            let (status, word) = if shared.is_ready() {
                (StatusCode::OK, "ready")
            } else {
                (StatusCode::SERVICE_UNAVAILABLE, "not ready")
            };
            let mut body = format!("{word}\n");
            if !shared.links.is_empty() {
                let (up, total) = (shared.links_up(), shared.links_total());
                let state = if up == total { "up" } else { "down" };
                body += &format!("{}: {state} ({up} of {total} connections)\n", shared.router);
            }
            (status, "text/plain", body)
        }
        _ => (
            StatusCode::NOT_FOUND,
            "text/plain",
            "not found\n".to_owned(),
        ),
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oldest_silent_connection_makes_room() {
        assert_eq!(victim([true, false, false].into_iter()), 1);
        assert_eq!(victim([false, true].into_iter()), 0);
        assert_eq!(
            victim([true, true].into_iter()),
            0,
            "all answered: the oldest"
        );
    }
}
