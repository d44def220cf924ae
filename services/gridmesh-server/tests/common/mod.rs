//! Helpers shared by the server's integration tests: an HTTP client (reqwest) for the server
//! under test, a TCP proxy that can cut a dependency off and bring it back, and a server started
//! on port 0.

#![allow(dead_code, unused_imports, reason = "each test binary uses a different subset")]

use std::future::{Future, IntoFuture};
use std::net::SocketAddr;
use std::pin::Pin;
use std::time::{Duration, Instant};

use gridmesh_server::AppState;
use gridmesh_server::broker::BrokerLink;
use gridmesh_server::config::MqttUrl;
use gridmesh_server::serve::Service;
pub use reqwest::Method;
use sqlx::PgPool;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// An HTTP answer.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", self.body))
    }
}

/// A client of one server: `http://{addr}` plus the path of each request.
///
/// Every request goes over a fresh connection (no idle connections are kept), as a separate
/// caller would, so a connection the server closed (after a 413, say) or is closing on shutdown
/// never carries the next request.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
}

impl Client {
    pub fn new(addr: SocketAddr) -> Self {
        let http = reqwest::Client::builder()
            // The server is on loopback: never through an `HTTP_PROXY` of the environment.
            .no_proxy()
            .pool_max_idle_per_host(0)
            .timeout(Duration::from_secs(20))
            .build()
            .expect("build the HTTP client");
        Self { http, base: format!("http://{addr}") }
    }

    /// A request for `path`, with its query string. Malformed values (`?limit=lots`) go out as
    /// written; only what a URL cannot hold raw (spaces, quotes, `#`) would be percent-encoded.
    pub fn request(&self, method: Method, path: &str) -> Request {
        Request(self.http.request(method, format!("{}{path}", self.base)))
    }

    pub fn get(&self, path: &str) -> Request {
        self.request(Method::GET, path)
    }

    pub fn post(&self, path: &str) -> Request {
        self.request(Method::POST, path)
    }

    pub fn put(&self, path: &str) -> Request {
        self.request(Method::PUT, path)
    }

    pub fn delete(&self, path: &str) -> Request {
        self.request(Method::DELETE, path)
    }

    /// A JSON call with an `Authorization` header: the status and the JSON answer (null if empty).
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        auth: &str,
        body: Option<serde_json::Value>,
    ) -> (u16, serde_json::Value) {
        let mut req = self.request(method, path).auth(auth);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let a = req.send().await;
        let json = if a.body.is_empty() { serde_json::Value::Null } else { a.json() };
        (a.status, json)
    }

    /// Polls `path` until it answers `status`, or panics after `within`.
    pub async fn wait_for_status(&self, path: &str, status: u16, within: Duration) -> Answer {
        let deadline = Instant::now() + within;
        loop {
            let answer = self.get(path).await;
            if answer.status == status {
                return answer;
            }
            assert!(
                Instant::now() < deadline,
                "{path} still answers {} after {within:?}: {}",
                answer.status,
                answer.body
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// A request being built; `.await` (or [`Request::send`]) sends it and reads the whole answer.
#[must_use = "a request does nothing until awaited"]
pub struct Request(reqwest::RequestBuilder);

impl Request {
    pub fn header(self, name: &str, value: &str) -> Self {
        Self(self.0.header(name, value))
    }

    /// An `Authorization` header with exactly this value (`Bearer …`, or a wrong scheme).
    pub fn auth(self, value: &str) -> Self {
        self.header("Authorization", value)
    }

    /// This exact text as the body, with no `Content-Type` unless one is set with
    /// [`Request::header`].
    pub fn body(self, text: impl Into<String>) -> Self {
        Self(self.0.body(text.into()))
    }

    /// This exact text as the body, with `Content-Type: application/json`; it need not be JSON
    /// (bad bodies are sent on purpose).
    pub fn json_text(self, text: impl Into<String>) -> Self {
        self.header("Content-Type", "application/json").body(text)
    }

    /// `value` serialized as the body, with `Content-Type: application/json`.
    pub fn json(self, value: &serde_json::Value) -> Self {
        Self(self.0.json(value))
    }

    /// Sends the request and reads the whole answer. A server may answer (413, say) and close
    /// before it read all of a large body: reqwest (hyper) reads the answer while it still
    /// writes the body, and a write that fails after the answer arrived does not lose it.
    pub async fn send(self) -> Answer {
        let (client, request) = self.0.build_split();
        let request = request.expect("a valid request");
        let what = format!("{} {}", request.method(), request.url());
        let response = client
            .execute(request)
            .await
            .unwrap_or_else(|e| panic!("{what}: no answer: {:?}", anyhow::Error::from(e)));
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .map(|(k, v)| (k.as_str().to_owned(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
            .collect();
        let body = response.bytes().await.unwrap_or_else(|e| panic!("{what}: reading the answer: {e:?}"));
        let body = String::from_utf8(body.to_vec()).unwrap_or_else(|e| panic!("{what}: not UTF-8: {e}"));
        Answer { status, headers, body }
    }
}

impl IntoFuture for Request {
    type Output = Answer;
    type IntoFuture = Pin<Box<dyn Future<Output = Answer> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.send())
    }
}

pub use gridmesh_testkit::Proxy;

/// The broker the tests use (`GRIDMESH_TEST_MQTT_URL`, default from `.cargo/config.toml`).
pub fn mqtt_url() -> MqttUrl {
    std::env::var("GRIDMESH_TEST_MQTT_URL")
        .unwrap_or_else(|_| "mqtt://127.0.0.1:1883".into())
        .parse()
        .expect("GRIDMESH_TEST_MQTT_URL is an mqtt:// URL")
}

/// A running server on port 0.
pub struct Server {
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<anyhow::Result<()>>>,
}

impl Server {
    pub async fn start(pool: PgPool, mqtt: &MqttUrl) -> Self {
        Self::with_state(AppState::new(
            pool,
            BrokerLink::spawn(mqtt, "gridmesh-test").expect("a plain mqtt:// test broker"),
        ))
        .await
    }

    /// A server around a state the test prepared (a server key, say).
    pub async fn with_state(state: AppState) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(Service::from_state(state).run(
            listener,
            async move {
                let _ = stopped.await;
            },
            Duration::from_secs(2),
        ));
        Self { addr, stop: Some(stop), task: Some(task) }
    }

    /// A client of this server.
    pub fn client(&self) -> Client {
        Client::new(self.addr)
    }

    /// Stops the server and waits for it to finish.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap().unwrap();
        }
    }
}

/// The URL of the test's own database (same server and role as `DATABASE_URL`).
pub fn database_url(pool: &PgPool) -> String {
    let mut url = url::Url::parse(&std::env::var("DATABASE_URL").expect("DATABASE_URL")).expect("a URL");
    url.set_path(pool.connect_options().get_database().expect("a database name"));
    url.to_string()
}

/// A user of `role` and an `Authorization` header value with a fresh token of theirs.
pub async fn user(pool: &PgPool, name: &str, role: gridmesh_core::Role) -> (gridmesh_core::UserId, String) {
    let new = gridmesh_db::NewUser { name: name.into(), email: None, role };
    let u = gridmesh_db::create_user(pool, &new).await.expect("create a user");
    let token = gridmesh_db::issue_token(pool, u.id, "", None).await.expect("issue a token").1;
    (u.id, format!("Bearer {token}"))
}
