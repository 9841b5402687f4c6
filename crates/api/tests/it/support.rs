//! `TestApp`: the real router on a real socket (port 0), a fresh database per test (from
//! `#[sqlx::test]`), its own namespace and admin token, and a reqwest client.

use std::net::SocketAddr;

use reqwest::header::HeaderMap;
use reqwest::Method;
use secrecy::SecretString;
use serde_json::Value;
use shopfloor_api::{router, AppState, Readiness};
use shopfloor_eventstore::EventStore;
use sqlx::PgPool;

pub struct TestApp {
    pub addr: SocketAddr,
    pub client: reqwest::Client,
    /// The bootstrap admin token.
    pub admin: String,
    pub pool: PgPool,
    /// The folder the reports are stored in (when not on S3); removed with the app.
    pub reports_dir: tempfile::TempDir,
    /// The app's one writer, for roles run beside it (as `serve` shares it).
    pub commands: shopfloor_commands::CommandService,
}

/// An answer: status, headers and body (JSON when it parses, else a string).
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Resp {
    pub fn content_type(&self) -> &str {
        self.headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    /// Asserts a problem+json answer with this status, title and detail; returns the detail.
    pub fn assert_problem(&self, status: u16) -> String {
        assert_eq!(self.status, status, "body: {}", self.body);
        assert!(
            self.content_type().starts_with("application/problem+json"),
            "content type {:?} for {}",
            self.content_type(),
            self.body
        );
        let title = self.body["title"].as_str().unwrap_or_default();
        let detail = self.body["detail"].as_str().unwrap_or_default();
        assert!(!title.is_empty(), "problem without title: {}", self.body);
        assert!(!detail.is_empty(), "problem without detail: {}", self.body);
        assert_eq!(self.body["status"], status);
        assert!(
            self.body["request_id"].is_string(),
            "no request id: {}",
            self.body
        );
        detail.to_string()
    }
}

impl TestApp {
    pub async fn spawn(pool: PgPool) -> Self {
        Self::spawn_with_storage(pool, None).await
    }

    /// An app whose reports go to `storage` (default: a temporary folder).
    pub async fn spawn_with_storage(
        pool: PgPool,
        storage: Option<shopfloor_reports::StorageSettings>,
    ) -> Self {
        let reports_dir = tempfile::tempdir().unwrap();
        let storage = storage.unwrap_or_else(|| {
            shopfloor_reports::StorageSettings::Filesystem(reports_dir.path().to_path_buf())
        });
        let store = EventStore::new(pool.clone());
        let admin = format!("test-admin-{}", uuid::Uuid::new_v4().simple());
        let namespace = format!("t{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
        // The one writer, as `serve` builds it.
        let commands = shopfloor_commands::CommandService::new(store).with_group_commit(256);
        let mut state = AppState::new(
            commands.clone(),
            Readiness::default(),
            None,
            Some(SecretString::from(admin.clone())),
            namespace,
        );
        let files = shopfloor_reports::ReportStore::open(&storage).unwrap();
        state.reports = Some(
            shopfloor_reports::Reports::new(pool.clone(), files, "Test plant")
                .with_catch_up(std::time::Duration::from_secs(5)),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, router(state)).await });
        Self {
            addr,
            client: reqwest::Client::new(),
            admin,
            pool,
            reports_dir,
            commands,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Sends a request with optional token, JSON body and extra headers.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
        headers: &[(&str, &str)],
    ) -> Resp {
        let mut rb = self.client.request(method, self.url(path));
        if let Some(t) = token {
            rb = rb.bearer_auth(t);
        }
        if let Some(b) = body {
            rb = rb.json(b);
        }
        for (k, v) in headers {
            rb = rb.header(*k, *v);
        }
        Self::read(rb.send().await.unwrap()).await
    }

    pub async fn read(r: reqwest::Response) -> Resp {
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let text = r.text().await.unwrap();
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Resp {
            status,
            headers,
            body,
        }
    }

    pub async fn get(&self, path: &str, token: &str) -> Resp {
        self.send(Method::GET, path, Some(token), None, &[]).await
    }

    pub async fn post(&self, path: &str, token: &str, body: &Value) -> Resp {
        self.send(Method::POST, path, Some(token), Some(body), &[])
            .await
    }

    pub async fn put(&self, path: &str, token: &str, body: &Value) -> Resp {
        self.send(Method::PUT, path, Some(token), Some(body), &[])
            .await
    }

    pub async fn patch(&self, path: &str, token: &str, body: &Value) -> Resp {
        self.send(Method::PATCH, path, Some(token), Some(body), &[])
            .await
    }

    /// Issues a token with this role (named after it plus a suffix).
    pub async fn token(&self, role: &str) -> String {
        let name = format!("{role}-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
        let r = self
            .post(
                "/api/v1/auth/tokens",
                &self.admin,
                &serde_json::json!({ "name": name, "role": role }),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.body);
        r.body["token"].as_str().unwrap().to_string()
    }

    /// Registers a machine (as admin).
    pub async fn machine(&self, id: &str) {
        let r = self
            .post(
                "/api/v1/machines",
                &self.admin,
                &serde_json::json!({ "machine_id": id, "type": "press", "line": "L1", "ideal_cycle_time_s": 2.0 }),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.body);
    }

    /// How many events the log holds.
    pub async fn event_count(&self) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM events")
            .fetch_one(&self.pool)
            .await
            .unwrap()
    }
}
