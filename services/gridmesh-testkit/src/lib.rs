//! Test helpers: outages without disturbing the shared services.
//!
//! * [`Proxy`]: a TCP proxy in front of PostgreSQL or the broker that can be cut (open
//!   connections dropped, new ones refused) and restored.
//! * [`Mosquitto`]: a private broker on a free port that a test can stop and start again.

use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::process::{Child, Command};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

/// A TCP proxy to an upstream address that can be cut and restored.
pub struct Proxy {
    /// Where clients connect.
    pub addr: SocketAddr,
    up: Arc<AtomicBool>,
    cut: Arc<Notify>,
    task: JoinHandle<()>,
}

impl Proxy {
    /// Starts a proxy to `upstream` on a free loopback port.
    ///
    /// # Panics
    /// When no loopback port can be bound.
    pub async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind a loopback port");
        let addr = listener.local_addr().expect("local address");
        let up = Arc::new(AtomicBool::new(true));
        let cut = Arc::new(Notify::new());
        let (up2, cut2) = (Arc::clone(&up), Arc::clone(&cut));
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else { return };
                if !up2.load(Ordering::SeqCst) {
                    drop(inbound);
                    continue;
                }
                let cut = Arc::clone(&cut2);
                tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(upstream).await else { return };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        () = cut.notified() => {}
                    }
                });
            }
        });
        Self { addr, up, cut, task }
    }

    /// Drops every open connection and refuses new ones.
    pub fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        self.cut.notify_waiters();
    }

    /// Accepts connections again.
    pub fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A private Mosquitto broker on a free loopback port.
pub struct Mosquitto {
    /// Its port.
    pub port: u16,
    child: Option<Child>,
}

impl Mosquitto {
    /// Starts `mosquitto -p PORT` on a free port and waits until it listens.
    ///
    /// # Panics
    /// When mosquitto is not installed or does not start within 10 s.
    pub async fn start() -> Self {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
            l.local_addr().expect("local address").port()
        };
        let mut me = Self { port, child: None };
        me.restart().await;
        me
    }

    /// Stops the broker (SIGKILL: a crash, not a clean shutdown).
    pub async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill().await;
        }
    }

    /// Starts the broker again on the same port.
    ///
    /// # Panics
    /// When it does not listen within 10 s.
    pub async fn restart(&mut self) {
        self.stop().await;
        let child = Command::new("mosquitto")
            .args(["-p", &self.port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start mosquitto (scripts/setup installs it)");
        self.child = Some(child);
        for _ in 0..100 {
            if TcpStream::connect(("127.0.0.1", self.port)).await.is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("mosquitto did not listen on port {} within 10 s", self.port);
    }
}

/// A private anvil (local EVM node) on a free loopback port, from the npm package that
/// `scripts/setup` installs in `contracts/node_modules`.
pub struct Anvil {
    /// Its port.
    pub port: u16,
    state: Option<std::path::PathBuf>,
    child: Option<Child>,
}

/// anvil's first default account's private key: a well-known development key, never for real
/// funds.
pub const ANVIL_KEY_0: &str = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";
/// anvil's second default account's private key.
pub const ANVIL_KEY_1: &str = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d";

fn anvil_bin() -> std::path::PathBuf {
    if let Ok(p) = std::env::var("GRIDMESH_ANVIL") {
        return p.into();
    }
    // contracts/bin/foundry runs the native binary from the npm platform package.
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../contracts/bin/foundry")
}

impl Anvil {
    /// Starts anvil; with `state`, the chain is kept in that file across restarts.
    ///
    /// # Panics
    /// When anvil is missing (run `scripts/setup`) or does not listen within 20 s.
    pub async fn start(state: Option<std::path::PathBuf>) -> Self {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
            l.local_addr().expect("local address").port()
        };
        let mut me = Self { port, state, child: None };
        me.restart().await;
        me
    }

    /// The JSON-RPC URL.
    #[must_use]
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Stops anvil: with `graceful`, SIGTERM (it writes its state file), else SIGKILL.
    pub async fn stop(&mut self, graceful: bool) {
        if let Some(mut child) = self.child.take() {
            if graceful {
                if let Some(pid) = child.id() {
                    let _ = Command::new("kill").args(["-TERM", &pid.to_string()]).status().await;
                }
                let _ = tokio::time::timeout(Duration::from_secs(10), child.wait()).await;
            }
            let _ = child.kill().await;
        }
    }

    /// Starts anvil again on the same port (and state file).
    ///
    /// # Panics
    /// When it does not listen within 20 s.
    pub async fn restart(&mut self) {
        self.stop(true).await;
        let mut cmd = Command::new(anvil_bin());
        if std::env::var_os("GRIDMESH_ANVIL").is_none() {
            cmd.arg("anvil");
        }
        cmd.args(["--port", &self.port.to_string(), "--host", "127.0.0.1"]);
        if let Some(state) = &self.state {
            cmd.arg("--state").arg(state).args(["--state-interval", "1"]);
        }
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start anvil (scripts/setup installs it in contracts/node_modules)");
        self.child = Some(child);
        for _ in 0..200 {
            if self.answers().await {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("anvil did not answer on port {} within 20 s", self.port);
    }

    /// True when anvil answers a JSON-RPC call (it accepts connections before it has loaded
    /// its state).
    async fn answers(&self) -> bool {
        let body = r#"{"jsonrpc":"2.0","id":1,"method":"eth_blockNumber","params":[]}"#;
        let Ok(client) = reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(2)).build() else {
            return false;
        };
        let sent = client
            .post(format!("http://127.0.0.1:{}/", self.port))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await;
        match sent {
            Ok(answer) => answer.text().await.is_ok_and(|t| t.contains("\"result\"")),
            Err(_) => false,
        }
    }
}
