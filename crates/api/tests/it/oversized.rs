//! A body over the limit gets its 413 problem+json, also by a client that sends the whole
//! body before it reads the answer (issue 16, item 10: about one attempt in five used to
//! end in a broken pipe, the connection closed while the client was still sending).
//! Served by `shopfloor_api::serve`, which drains a body left unread.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use secrecy::SecretString;
use serde_json::Value;
use shopfloor_api::{router, serve, AppState, Readiness, ServeLimits};
use shopfloor_eventstore::EventStore;
use sqlx::PgPool;

const ADMIN: &str = "oversized-admin-token-4f7c2a";

async fn spawn(pool: PgPool) -> SocketAddr {
    let state = AppState::new(
        shopfloor_commands::CommandService::new(EventStore::new(pool)),
        Readiness::default(),
        None,
        Some(SecretString::from(ADMIN)),
        "oversized",
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(serve(
        listener,
        router(state),
        ServeLimits::default(),
        std::future::pending(),
    ));
    addr
}

/// Valid JSON of about 2.3 MiB: a batch of machine events.
fn big_batch() -> Vec<u8> {
    let event = r#"{"event_type":"parts_produced","machine_id":"M-OVERSIZED","good":1,"scrap":0,"timestamp":"2026-01-05T08:00:00Z"}"#;
    let n = 2_400_000 / (event.len() + 1) + 1;
    let body = format!("{{\"events\":[{}]}}", vec![event; n].join(","));
    assert!(body.len() > 2_300_000);
    body.into_bytes()
}

/// One answer read off a connection: status, content type, body.
type Answer = (u16, String, Vec<u8>);

/// Reads one HTTP/1.1 answer with a Content-Length.
fn read_answer(s: &mut TcpStream) -> std::io::Result<Answer> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = s.read(&mut chunk)?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_lowercase();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let header = |name: &str| {
        head.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}: ")))
            .unwrap_or_default()
            .trim()
            .to_string()
    };
    let length: usize = header("content-length").parse().unwrap_or(0);
    while buf.len() < head_end + length {
        let n = s.read(&mut chunk)?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Ok((
        status,
        header("content-type"),
        buf[head_end..head_end + length].to_vec(),
    ))
}

/// Like a plain blocking client: sends the whole request (the body with a Content-Length,
/// or chunked), only then reads the answer; then asks `/healthz` on the same connection.
fn post_then_reuse(addr: SocketAddr, body: &[u8], chunked: bool) -> std::io::Result<(Answer, u16)> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(20)))?;
    let framing = if chunked {
        "Transfer-Encoding: chunked".to_string()
    } else {
        format!("Content-Length: {}", body.len())
    };
    let head = format!(
        "POST /api/v1/machines/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {ADMIN}\r\n\
         Content-Type: application/json\r\n{framing}\r\n\r\n"
    );
    s.write_all(head.as_bytes())?;
    if chunked {
        for part in body.chunks(64 * 1024) {
            s.write_all(format!("{:x}\r\n", part.len()).as_bytes())?;
            s.write_all(part)?;
            s.write_all(b"\r\n")?;
        }
        s.write_all(b"0\r\n\r\n")?;
    } else {
        s.write_all(body)?;
    }
    let answer = read_answer(&mut s)?;
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")?;
    let (health, _, _) = read_answer(&mut s)?;
    Ok((answer, health))
}

#[sqlx::test(migrator = "shopfloor_eventstore::MIGRATOR")]
async fn every_oversized_body_reads_its_413(pool: PgPool) {
    let addr = spawn(pool).await;
    let body = big_batch();
    let outcomes = tokio::task::spawn_blocking(move || {
        let mut outcomes = Vec::new();
        for attempt in 0..25 {
            let chunked = attempt >= 20; // 20 with a Content-Length, 5 chunked
            outcomes.push((chunked, post_then_reuse(addr, &body, chunked)));
        }
        outcomes
    })
    .await
    .unwrap();
    let mut failures = Vec::new();
    for (i, (chunked, outcome)) in outcomes.iter().enumerate() {
        match outcome {
            Ok(((413, content_type, body), 200))
                if content_type.starts_with("application/problem+json") =>
            {
                let problem: Value = serde_json::from_slice(body).unwrap();
                assert_eq!(problem["status"], 413);
                assert!(problem["detail"].is_string() && problem["title"].is_string());
            }
            other => failures.push(format!("attempt {i} (chunked: {chunked}): {other:?}")),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} attempts did not read a 413 problem+json on a usable connection:\n{}",
        failures.len(),
        outcomes.len(),
        failures.join("\n")
    );
}
