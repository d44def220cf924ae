//! Helpers shared by the server's integration tests: a minimal HTTP/1.1 client, a TCP proxy
//! that can cut a dependency off and bring it back, and a server started on port 0.

#![allow(dead_code, unused_imports, reason = "each test binary uses a different subset")]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use gridmesh_server::AppState;
use gridmesh_server::broker::BrokerLink;
use gridmesh_server::config::MqttUrl;
use gridmesh_server::serve::Service;
use sqlx::PgPool;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
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

/// Sends one request over a fresh connection (`Connection: close`) and reads the whole answer.
pub async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> Answer {
    let stream = TcpStream::connect(addr).await.expect("connect to the server");
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if let Some(b) = body {
        req.push_str(&format!("Content-Length: {}\r\n", b.len()));
    }
    req.push_str("\r\n");
    if let Some(b) = body {
        req.push_str(b);
    }
    // Write and read at once: a server may answer (413, say) and close before reading a large
    // body, so a failed write, or a reset after the answer arrived, is not a failed request.
    let (mut reader, mut writer) = stream.into_split();
    let send = tokio::spawn(async move {
        let _ = writer.write_all(req.as_bytes()).await;
        writer
    });
    let mut raw = Vec::new();
    let read: std::io::Result<()> = tokio::time::timeout(Duration::from_secs(20), async {
        let mut chunk = [0_u8; 8192];
        loop {
            match reader.read(&mut chunk).await {
                Ok(0) => return Ok(()),
                Ok(n) => raw.extend_from_slice(&chunk[..n]),
                Err(_) if !raw.is_empty() => return Ok(()),
                Err(e) => return Err(e),
            }
        }
    })
    .await
    .expect("answer within 20 s");
    read.expect("read answer");
    drop(send.await);
    let text = String::from_utf8(raw).expect("UTF-8 answer");
    let (head, body) = text.split_once("\r\n\r\n").expect("header/body separator");
    let mut lines = head.lines();
    let status: u16 =
        lines.next().and_then(|l| l.split(' ').nth(1)).and_then(|s| s.parse().ok()).expect("status line");
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    Answer { status, headers, body: body.to_owned() }
}

pub async fn get(addr: SocketAddr, path: &str) -> Answer {
    request(addr, "GET", path, &[], None).await
}

/// Polls `path` until it answers `status`, or panics after `within`.
pub async fn wait_for_status(addr: SocketAddr, path: &str, status: u16, within: Duration) -> Answer {
    let deadline = Instant::now() + within;
    loop {
        let answer = get(addr, path).await;
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
        let state = AppState::new(pool, BrokerLink::spawn(mqtt, "gridmesh-test"));
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

/// A JSON call with an `Authorization` header: the status and the JSON answer (null if empty).
pub async fn call(
    addr: SocketAddr,
    method: &str,
    path: &str,
    auth: &str,
    body: Option<serde_json::Value>,
) -> (u16, serde_json::Value) {
    let body = body.map(|b| b.to_string());
    let mut headers = vec![("Authorization", auth)];
    if body.is_some() {
        headers.push(("Content-Type", "application/json"));
    }
    let a = request(addr, method, path, &headers, body.as_deref()).await;
    let json = if a.body.is_empty() { serde_json::Value::Null } else { a.json() };
    (a.status, json)
}
