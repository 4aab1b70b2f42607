//! The service account's access tokens (OAuth 2.0 JWT bearer grant, RFC
//! 7523): a JWT signed with the key's RSA key is exchanged at the key's
//! `token_uri` for an access token of the scopes a call asks for, kept until
//! shortly before it expires. This is all of OAuth the daemon needs; it
//! replaces yup-oauth2, whose installed-application flow put an HTTP server
//! into the daemon binary.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http_body_util::BodyExt;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::{Deserialize, Serialize};

use super::google::Connector;

/// What the daemon reads of a service account's JSON key.
#[derive(Clone, Deserialize)]
pub struct ServiceAccountKey {
    pub client_email: String,
    pub private_key: String,
    pub token_uri: String,
}

/// Issues access tokens for one service account; clones share the cache.
#[derive(Clone)]
pub struct ServiceAccount {
    inner: Arc<Inner>,
}

struct Inner {
    email: String,
    token_uri: String,
    key: EncodingKey,
    http: hyper_util::client::legacy::Client<Connector, String>,
    /// Scopes (space-separated) → the token and when to stop using it.
    cache: Mutex<HashMap<String, (String, Instant)>>,
}

/// Why no token came.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The token endpoint answered with an OAuth error (`invalid_grant`
    /// for a deleted key, …); the body is kept for the message.
    #[error("the token endpoint answered {status}: {body}")]
    Refused { status: u16, body: String },
    #[error("cannot reach the token endpoint: {0}")]
    Unreachable(String),
    #[error("cannot sign the token request: {0}")]
    Sign(String),
}

#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    scope: &'a str,
    aud: &'a str,
    iat: i64,
    exp: i64,
}

#[derive(Deserialize)]
struct Answer {
    access_token: String,
    expires_in: u64,
}

impl ServiceAccount {
    /// A token issuer for `key`, fetching tokens over `http`.
    ///
    /// # Errors
    /// The private key is not an RSA key in PEM.
    pub fn new(
        key: &ServiceAccountKey,
        http: hyper_util::client::legacy::Client<Connector, String>,
    ) -> Result<ServiceAccount, TokenError> {
        let signing = EncodingKey::from_rsa_pem(key.private_key.as_bytes())
            .map_err(|e| TokenError::Sign(format!("the private key is not an RSA PEM key: {e}")))?;
        Ok(ServiceAccount {
            inner: Arc::new(Inner {
                email: key.client_email.clone(),
                token_uri: key.token_uri.clone(),
                key: signing,
                http,
                cache: Mutex::new(HashMap::new()),
            }),
        })
    }

    /// An access token for `scopes`, from the cache while it is fresh.
    ///
    /// # Errors
    /// [`TokenError`].
    pub async fn token(&self, scopes: &[&str]) -> Result<String, TokenError> {
        let scope = scopes.join(" ");
        let cached = self
            .cache()
            .get(&scope)
            .filter(|(_, until)| Instant::now() < *until)
            .map(|(token, _)| token.clone());
        if let Some(token) = cached {
            return Ok(token);
        }
        let (token, lifetime) = self.fetch(&scope).await?;
        // Renewed a minute early (or at half its life, if shorter), so a
        // call never carries a token that expires on the way.
        let margin = Duration::from_secs(60).min(lifetime / 2);
        self.cache()
            .insert(scope, (token.clone(), Instant::now() + lifetime - margin));
        Ok(token)
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, HashMap<String, (String, Instant)>> {
        self.inner
            .cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    async fn fetch(&self, scope: &str) -> Result<(String, Duration), TokenError> {
        let now = chrono::Utc::now().timestamp();
        let claims = Claims {
            iss: &self.inner.email,
            scope,
            aud: &self.inner.token_uri,
            iat: now,
            exp: now + 3600,
        };
        let assertion =
            jsonwebtoken::encode(&Header::new(Algorithm::RS256), &claims, &self.inner.key)
                .map_err(|e| TokenError::Sign(e.to_string()))?;
        // The JWT is base64url and dots: nothing in it needs escaping.
        let body = format!(
            "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion={assertion}"
        );
        let request = hyper::Request::post(&self.inner.token_uri)
            .header(
                hyper::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(body)
            .map_err(|e| TokenError::Unreachable(format!("bad token_uri: {e}")))?;
        let response = self
            .inner
            .http
            .request(request)
            .await
            .map_err(|e| TokenError::Unreachable(e.to_string()))?;
        let status = response.status().as_u16();
        let bytes = response
            .into_body()
            .collect()
            .await
            .map_err(|e| TokenError::Unreachable(e.to_string()))?
            .to_bytes();
        let text = String::from_utf8_lossy(&bytes);
        if status != 200 {
            return Err(TokenError::Refused {
                status,
                body: text.chars().take(500).collect(),
            });
        }
        let answer: Answer = serde_json::from_str(&text).map_err(|e| TokenError::Refused {
            status,
            body: format!(
                "not a token ({e}): {}",
                text.chars().take(200).collect::<String>()
            ),
        })?;
        Ok((
            answer.access_token,
            Duration::from_secs(answer.expires_in.max(1)),
        ))
    }
}

/// What `google-calendar3` asks of an authenticator.
impl google_calendar3::common::GetToken for ServiceAccount {
    fn get_token<'a>(
        &'a self,
        scopes: &'a [&str],
    ) -> Pin<
        Box<
            dyn Future<Output = Result<Option<String>, Box<dyn std::error::Error + Send + Sync>>>
                + Send
                + 'a,
        >,
    > {
        Box::pin(async move {
            self.token(scopes)
                .await
                .map(Some)
                .map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)
        })
    }
}
