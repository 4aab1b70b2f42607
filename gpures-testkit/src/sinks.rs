//! Local receivers for notifications: [`WebhookSink`] (an HTTP server that
//! keeps every POSTed JSON body, and can answer 500 first) and [`SmtpSink`]
//! (enough of SMTP for the real `lettre` client to hand over a message).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

#[derive(Default)]
struct Hooks {
    /// Bodies accepted (answered 2xx): path, Idempotency-Key, body.
    accepted: Vec<(String, Option<String>, Value)>,
    /// Requests to answer 500 before accepting again.
    fail_next: u32,
    /// Requests answered 500.
    refused: u32,
}

/// A Slack-style incoming webhook on 127.0.0.1.
#[derive(Clone)]
pub struct WebhookSink {
    addr: SocketAddr,
    state: Arc<Mutex<Hooks>>,
}

impl WebhookSink {
    /// Starts the receiver.
    ///
    /// # Errors
    /// The port cannot be bound.
    pub async fn start() -> std::io::Result<WebhookSink> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let sink = WebhookSink {
            addr: listener.local_addr()?,
            state: Arc::default(),
        };
        let state = sink.state.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let state = state.clone();
                tokio::spawn(async move {
                    let service =
                        hyper::service::service_fn(move |req| receive(state.clone(), req));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(sink)
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}/{}", self.addr, path.trim_start_matches('/'))
    }

    /// Answers the next `n` requests with 500.
    pub fn fail_next(&self, n: u32) {
        self.lock().fail_next = n;
    }

    /// The accepted bodies, in arrival order.
    pub fn accepted(&self) -> Vec<Value> {
        self.lock()
            .accepted
            .iter()
            .map(|(_, _, v)| v.clone())
            .collect()
    }

    /// The bodies accepted at `path` (as given to [`Self::url`]).
    pub fn accepted_at(&self, path: &str) -> Vec<Value> {
        let path = format!("/{}", path.trim_start_matches('/'));
        self.lock()
            .accepted
            .iter()
            .filter(|(p, _, _)| *p == path)
            .map(|(_, _, v)| v.clone())
            .collect()
    }

    /// The Idempotency-Key of each accepted request.
    pub fn keys(&self) -> Vec<Option<String>> {
        self.lock()
            .accepted
            .iter()
            .map(|(_, k, _)| k.clone())
            .collect()
    }

    /// How many requests were answered 500.
    pub fn refused(&self) -> u32 {
        self.lock().refused
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Hooks> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

async fn receive(
    state: Arc<Mutex<Hooks>>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path().to_owned();
    let key = req
        .headers()
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let value: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let mut s = state
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let status = if s.fail_next > 0 {
        s.fail_next -= 1;
        s.refused += 1;
        500
    } else {
        s.accepted.push((path, key, value));
        200
    };
    drop(s);
    let mut response = Response::new(Full::new(Bytes::from_static(b"ok")));
    *response.status_mut() = hyper::StatusCode::from_u16(status).unwrap_or_default();
    Ok(response)
}

/// A message the SMTP sink took.
#[derive(Clone, Debug)]
pub struct Mail {
    pub from: String,
    pub to: Vec<String>,
    /// The DATA, headers and body, dot-unstuffed.
    pub data: String,
}

/// An SMTP server on 127.0.0.1 that accepts every message.
#[derive(Clone)]
pub struct SmtpSink {
    addr: SocketAddr,
    mails: Arc<Mutex<Vec<Mail>>>,
}

impl SmtpSink {
    /// Starts the sink.
    ///
    /// # Errors
    /// The port cannot be bound.
    pub async fn start() -> std::io::Result<SmtpSink> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let sink = SmtpSink {
            addr: listener.local_addr()?,
            mails: Arc::default(),
        };
        let mails = sink.mails.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let mails = mails.clone();
                tokio::spawn(async move {
                    let _ = session(stream, mails).await;
                });
            }
        });
        Ok(sink)
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn mails(&self) -> Vec<Mail> {
        self.mails
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

async fn session(
    stream: tokio::net::TcpStream,
    mails: Arc<Mutex<Vec<Mail>>>,
) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read).lines();
    write.write_all(b"220 sink ESMTP\r\n").await?;
    let (mut from, mut to) = (String::new(), Vec::new());
    while let Some(line) = lines.next_line().await? {
        let upper = line.to_ascii_uppercase();
        if upper.starts_with("EHLO") || upper.starts_with("HELO") {
            write.write_all(b"250-sink\r\n250 8BITMIME\r\n").await?;
        } else if upper.starts_with("MAIL FROM:") {
            from = line[10..].trim().to_owned();
            to.clear();
            write.write_all(b"250 ok\r\n").await?;
        } else if upper.starts_with("RCPT TO:") {
            to.push(line[8..].trim().to_owned());
            write.write_all(b"250 ok\r\n").await?;
        } else if upper == "DATA" {
            write.write_all(b"354 go on\r\n").await?;
            let mut data = String::new();
            while let Some(l) = lines.next_line().await? {
                if l == "." {
                    break;
                }
                data.push_str(l.strip_prefix('.').unwrap_or(&l));
                data.push('\n');
            }
            mails
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push(Mail {
                    from: from.clone(),
                    to: to.clone(),
                    data,
                });
            write.write_all(b"250 queued\r\n").await?;
        } else if upper == "QUIT" {
            write.write_all(b"221 bye\r\n").await?;
            return Ok(());
        } else if upper == "RSET" || upper == "NOOP" {
            write.write_all(b"250 ok\r\n").await?;
        } else {
            write.write_all(b"502 not here\r\n").await?;
        }
    }
    Ok(())
}
