//! A local HTTP server that speaks enough of Google to test calendar sync
//! with the real `google-calendar3` client: the OAuth token endpoint of a
//! service account, and Calendar v3 events (insert, get, update, patch,
//! delete, list with `privateExtendedProperty`). Events live in memory;
//! errors have Google's JSON shape; faults can be injected ([`FakeGoogle`]).
//!
//! Calendars: [`CALENDAR`] works; [`UNSHARED`] answers 403 (not shared with
//! the service account); any other id answers 404.
//!
//! As Google does: the calendar is shared with the service account as a
//! writer, so a token for an owner-only scope (`calendar.events.owned…`)
//! gets 403 `insufficientPermissions`; tokens expire (see
//! [`FakeGoogle::set_token_lifetime`]) and a stale one gets 401; deleted
//! events are kept as `cancelled` (get still answers, a second delete is
//! 410, inserting the id again is 409); `created`/`updated` are RFC 3339
//! strings; lists come in pages of 250 (or `maxResults`).

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{Value, json};

/// The calendar the tests write.
pub const CALENDAR: &str = "lab@group.calendar.google.com";
/// A calendar that exists but is not shared with the service account.
pub const UNSHARED: &str = "unshared@group.calendar.google.com";
/// The service account's email in the test key file.
pub const CLIENT_EMAIL: &str = "gpures-test@gpures-test.iam.gserviceaccount.com";

/// An injected failure of the next Calendar call(s).
#[derive(Clone, Debug)]
pub struct Fault {
    pub status: u16,
    pub reason: &'static str,
    /// Answer only after this long (a slow server).
    pub delay: Duration,
}

#[derive(Default)]
struct State {
    /// Event id → (event, deleted).
    events: HashMap<String, (Value, bool)>,
    /// Successful inserts per event id: more than one would be a duplicate.
    inserts: HashMap<String, u32>,
    /// Inserts refused because the id exists (409).
    conflicts: u64,
    faults: VecDeque<Fault>,
    token_down: bool,
    /// Every Calendar call answers 503 (Google unreachable).
    down: bool,
    calls: u64,
    /// Access token → the scope it was issued for, and when.
    tokens: HashMap<String, (String, std::time::Instant)>,
    /// Seconds a token lives (`expires_in`); an older one gets 401.
    token_lifetime: Option<u64>,
}

/// The scopes that may read and write the events of a calendar shared with
/// the service account as a writer ("Make changes to events"); the
/// `*.owned*` scopes cover only calendars the account owns, so real Google
/// answers 403 for them on a shared calendar, and so does the fake.
const WRITER_SCOPES: [&str; 2] = [
    "https://www.googleapis.com/auth/calendar",
    "https://www.googleapis.com/auth/calendar.events",
];

/// The `scope` claim of a JWT bearer assertion (`grant_type=…&assertion=…`).
fn assertion_scope(form: &[u8]) -> Option<String> {
    let form = std::str::from_utf8(form).ok()?;
    let assertion = percent_decode(
        form.split('&')
            .find_map(|kv| kv.strip_prefix("assertion="))?,
    );
    let payload = assertion.split('.').nth(1)?;
    let claims: Value = serde_json::from_slice(&base64url_decode(payload)?).ok()?;
    claims.get("scope")?.as_str().map(str::to_owned)
}

fn base64url_decode(s: &str) -> Option<Vec<u8>> {
    let mut bits = 0u32;
    let mut n = 0;
    let mut out = Vec::new();
    for c in s.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'-' | b'+' => 62,
            b'_' | b'/' => 63,
            b'=' => break,
            _ => return None,
        };
        bits = (bits << 6) | u32::from(v);
        n += 6;
        if n >= 8 {
            n -= 8;
            out.push(u8::try_from((bits >> n) & 0xff).ok()?);
        }
    }
    Some(out)
}

/// The running fake. Cheap to clone; the server stops with the runtime.
#[derive(Clone)]
pub struct FakeGoogle {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
}

impl FakeGoogle {
    /// Starts the server on 127.0.0.1 and an ephemeral port.
    ///
    /// # Errors
    /// The port cannot be bound.
    pub async fn start() -> std::io::Result<FakeGoogle> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let state: Arc<Mutex<State>> = Arc::default();
        let fake = FakeGoogle {
            addr,
            state: state.clone(),
        };
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let state = state.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| handle(state.clone(), req));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(fake)
    }

    /// The base URL for `[calendar] api_base_url`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Writes a service-account key file whose `token_uri` points here.
    ///
    /// # Errors
    /// The file cannot be written.
    pub fn write_key(&self, path: &Path) -> std::io::Result<()> {
        let pem = include_str!("../data/google/test-key.pem");
        let key = json!({
            "type": "service_account",
            "project_id": "gpures-test",
            "private_key_id": "0123456789abcdef",
            "private_key": pem,
            "client_email": CLIENT_EMAIL,
            "client_id": "1",
            "auth_uri": format!("{}/auth", self.base_url()),
            "token_uri": format!("{}/token", self.base_url()),
        });
        std::fs::write(path, key.to_string())
    }

    fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut s)
    }

    /// Queues `n` failures of the next Calendar calls.
    pub fn fail_next(&self, n: usize, status: u16, reason: &'static str) {
        self.with(|s| {
            for _ in 0..n {
                s.faults.push_back(Fault {
                    status,
                    reason,
                    delay: Duration::ZERO,
                });
            }
        });
    }

    /// Makes the next `n` Calendar calls answer 200 only after `delay`
    /// (status 0 in a fault means "answer normally, late").
    pub fn slow_next(&self, n: usize, delay: Duration) {
        self.with(|s| {
            for _ in 0..n {
                s.faults.push_back(Fault {
                    status: 0,
                    reason: "",
                    delay,
                });
            }
        });
    }

    /// Drops every queued fault.
    pub fn clear_faults(&self) {
        self.with(|s| s.faults.clear());
    }

    /// Tokens from now on live `secs` seconds; older ones get 401, as at Google.
    pub fn set_token_lifetime(&self, secs: u64) {
        self.with(|s| s.token_lifetime = Some(secs));
    }

    pub fn set_token_down(&self, down: bool) {
        self.with(|s| s.token_down = down);
    }

    /// Google unreachable (every Calendar call 503) or back.
    pub fn set_down(&self, down: bool) {
        self.with(|s| s.down = down);
    }

    /// The live (not deleted) events, by id.
    pub fn events(&self) -> HashMap<String, Value> {
        self.with(|s| {
            s.events
                .iter()
                .filter(|(_, (_, deleted))| !deleted)
                .map(|(k, (v, _))| (k.clone(), v.clone()))
                .collect()
        })
    }

    /// Inserts refused with 409 because the event existed.
    pub fn conflicts(&self) -> u64 {
        self.with(|s| s.conflicts)
    }

    /// The most successful inserts of any one event id (1 means no duplicate).
    pub fn max_inserts(&self) -> u32 {
        self.with(|s| s.inserts.values().copied().max().unwrap_or(0))
    }

    pub fn calls(&self) -> u64 {
        self.with(|s| s.calls)
    }

    /// An event put in by hand (as a person editing the calendar would).
    pub fn put_event(&self, id: &str, event: Value) {
        self.with(|s| {
            s.events.insert(id.to_owned(), (event, false));
        });
    }

    /// An event deleted by hand.
    pub fn delete_event(&self, id: &str) {
        self.with(|s| {
            if let Some(e) = s.events.get_mut(id) {
                e.1 = true;
            }
        });
    }

    /// An event edited by hand.
    pub fn edit_event(&self, id: &str, edit: impl FnOnce(&mut Value)) {
        self.with(|s| {
            if let Some(e) = s.events.get_mut(id) {
                edit(&mut e.0);
            }
        });
    }
}

fn google_error(status: u16, reason: &str, message: &str) -> Response<Full<Bytes>> {
    let body = json!({
        "error": {
            "code": status,
            "message": message,
            "errors": [{ "domain": "global", "reason": reason, "message": message }],
        }
    });
    respond(status, Some(body))
}

fn respond(status: u16, body: Option<Value>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(
        body.map(|b| b.to_string()).unwrap_or_default(),
    )));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    r
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 3;
                    }
                    None => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn query_pairs(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn time_of(e: &Value, which: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    e.get(which)?
        .get("dateTime")?
        .as_str()
        .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
        .map(|d| d.with_timezone(&chrono::Utc))
}

async fn handle(
    state: Arc<Mutex<State>>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let bearer = req
        .headers()
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_owned);
    let query = req.uri().query().unwrap_or("").to_owned();
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let lock = || state.lock().unwrap_or_else(|p| p.into_inner());

    if path == "/token" {
        if lock().token_down {
            return Ok(respond(
                503,
                Some(json!({"error": "temporarily_unavailable"})),
            ));
        }
        let scope = assertion_scope(&body).unwrap_or_default();
        let (token, lifetime) = {
            let mut s = lock();
            let token = format!("fake-access-token-{}", s.tokens.len());
            s.tokens
                .insert(token.clone(), (scope, std::time::Instant::now()));
            (token, s.token_lifetime.unwrap_or(3600))
        };
        return Ok(respond(
            200,
            Some(json!({"access_token": token, "token_type": "Bearer", "expires_in": lifetime})),
        ));
    }
    // The calendar is shared with the account as a writer: a token for a
    // scope that covers only owned calendars is refused, as Google does.
    let token = bearer.and_then(|t| {
        let s = lock();
        let lifetime = Duration::from_secs(s.token_lifetime.unwrap_or(3600));
        s.tokens
            .get(&t)
            .filter(|(_, issued)| issued.elapsed() < lifetime)
            .map(|(scope, _)| scope.clone())
    });
    // Unknown or expired: as Google answers a stale token.
    let Some(scope) = token else {
        return Ok(google_error(401, "authError", "Invalid Credentials"));
    };
    if !scope.split(' ').any(|s| WRITER_SCOPES.contains(&s)) {
        return Ok(google_error(
            403,
            "insufficientPermissions",
            "Request had insufficient authentication scopes.",
        ));
    }
    let Some(rest) = path.strip_prefix("/calendar/v3/calendars/") else {
        return Ok(google_error(404, "notFound", "Not Found"));
    };
    let (fault, down) = {
        let mut s = lock();
        s.calls += 1;
        (s.faults.pop_front(), s.down)
    };
    if down {
        return Ok(google_error(503, "backendError", "Backend Error"));
    }
    if let Some(f) = fault {
        if !f.delay.is_zero() {
            tokio::time::sleep(f.delay).await;
        }
        if f.status != 0 {
            if f.status == 410 {
                return Ok(respond(410, None));
            }
            return Ok(google_error(f.status, f.reason, "Injected fault"));
        }
    }
    let mut parts = rest.splitn(3, '/');
    let calendar = percent_decode(parts.next().unwrap_or(""));
    if parts.next() != Some("events") {
        return Ok(google_error(404, "notFound", "Not Found"));
    }
    let event_id = parts.next().map(percent_decode);
    if calendar == UNSHARED {
        return Ok(google_error(
            403,
            "requiredAccessLevel",
            "You need to have writer access to this calendar.",
        ));
    }
    if calendar != CALENDAR {
        return Ok(google_error(404, "notFound", "Not Found"));
    }
    let mut s = lock();
    let resp = match (method, event_id) {
        (Method::POST, None) => {
            let Ok(mut ev) = serde_json::from_slice::<Value>(&body) else {
                return Ok(google_error(400, "badRequest", "Bad Request"));
            };
            let id = ev
                .get("id")
                .and_then(Value::as_str)
                .map(str::to_owned)
                .unwrap_or_else(|| format!("auto{}", s.calls));
            if s.events.contains_key(&id) {
                s.conflicts += 1;
                return Ok(google_error(
                    409,
                    "duplicate",
                    "The requested identifier already exists.",
                ));
            }
            ev["id"] = json!(id);
            // As Google: confirmed unless the event says tentative.
            if ev["status"] != "tentative" {
                ev["status"] = json!("confirmed");
            }
            let now = chrono::Utc::now().to_rfc3339();
            ev["created"] = json!(now);
            ev["updated"] = json!(now);
            s.events.insert(id.clone(), (ev.clone(), false));
            *s.inserts.entry(id).or_default() += 1;
            respond(200, Some(ev))
        }
        (Method::GET, None) => {
            let pairs = query_pairs(&query);
            let wanted: Vec<(String, String)> = pairs
                .iter()
                .filter(|(k, _)| k == "privateExtendedProperty")
                .filter_map(|(_, v)| v.split_once('=').map(|(a, b)| (a.to_owned(), b.to_owned())))
                .collect();
            let param = |name: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| k == name)
                    .map(|(_, v)| v.clone())
            };
            let t_min =
                param("timeMin").and_then(|v| chrono::DateTime::parse_from_rfc3339(&v).ok());
            let t_max =
                param("timeMax").and_then(|v| chrono::DateTime::parse_from_rfc3339(&v).ok());
            let max: usize = param("maxResults")
                .and_then(|v| v.parse().ok())
                .unwrap_or(250);
            let offset: usize = param("pageToken").and_then(|v| v.parse().ok()).unwrap_or(0);
            let mut items: Vec<Value> = s
                .events
                .values()
                .filter(|(_, deleted)| !deleted)
                .map(|(e, _)| e)
                .filter(|e| {
                    wanted.iter().all(|(k, v)| {
                        e.pointer(&format!("/extendedProperties/private/{k}"))
                            .and_then(Value::as_str)
                            == Some(v.as_str())
                    })
                })
                .filter(|e| match (t_min, time_of(e, "end")) {
                    (Some(min), Some(end)) => end > min,
                    _ => true,
                })
                .filter(|e| match (t_max, time_of(e, "start")) {
                    (Some(max), Some(start)) => start < max,
                    _ => true,
                })
                .cloned()
                .collect();
            items.sort_by(|a, b| a["id"].as_str().cmp(&b["id"].as_str()));
            let page: Vec<Value> = items.iter().skip(offset).take(max).cloned().collect();
            let mut out = json!({"kind": "calendar#events", "items": page});
            if offset + max < items.len() {
                out["nextPageToken"] = json!((offset + max).to_string());
            }
            respond(200, Some(out))
        }
        (Method::GET, Some(id)) => match s.events.get(&id) {
            Some((e, false)) => respond(200, Some(e.clone())),
            Some((e, true)) => {
                let mut e = e.clone();
                e["status"] = json!("cancelled");
                respond(200, Some(e))
            }
            None => google_error(404, "notFound", "Not Found"),
        },
        (Method::PUT | Method::PATCH, Some(id)) => {
            let Ok(ev) = serde_json::from_slice::<Value>(&body) else {
                return Ok(google_error(400, "badRequest", "Bad Request"));
            };
            match s.events.get_mut(&id) {
                Some(entry) => {
                    let mut merged = if entry.1 { json!({}) } else { entry.0.clone() };
                    if let (Some(m), Some(new)) = (merged.as_object_mut(), ev.as_object()) {
                        for (k, v) in new {
                            m.insert(k.clone(), v.clone());
                        }
                    }
                    merged["id"] = json!(id);
                    merged["updated"] = json!(chrono::Utc::now().to_rfc3339());
                    let cancelled =
                        merged.get("status").and_then(Value::as_str) == Some("cancelled");
                    *entry = (merged.clone(), cancelled);
                    respond(200, Some(merged))
                }
                None => google_error(404, "notFound", "Not Found"),
            }
        }
        (Method::DELETE, Some(id)) => match s.events.get_mut(&id) {
            Some(entry) if !entry.1 => {
                entry.1 = true;
                respond(204, None)
            }
            Some(_) => respond(410, None),
            None => google_error(404, "notFound", "Not Found"),
        },
        _ => google_error(405, "methodNotAllowed", "Method Not Allowed"),
    };
    Ok(resp)
}
