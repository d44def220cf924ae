//! Serving simulated devices over Modbus TCP (tokio-modbus), one port per home, or over Modbus
//! RTU on a serial line.

use std::future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_modbus::prelude::{ExceptionCode, Request, Response, SlaveRequest};
use tokio_modbus::server::Service;
use tokio_modbus::server::tcp::{Server, accept_tcp_connection};

use crate::device::{Refusal, SimDevice};

/// A device shared between its Modbus connections and its clock.
pub type Shared = Arc<Mutex<SimDevice>>;

/// Counts a connection while any clone of its service is alive.
struct Connection(Arc<AtomicUsize>);

impl Drop for Connection {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

#[derive(Clone)]
struct DeviceService {
    device: Shared,
    /// Held (not read) so the connection counts as open while its service lives.
    _connection: Option<Arc<Connection>>,
}

impl Service for DeviceService {
    type Request = SlaveRequest<'static>;
    type Response = Response;
    type Exception = ExceptionCode;
    type Future = future::Ready<Result<Response, ExceptionCode>>;

    fn call(&self, req: Self::Request) -> Self::Future {
        let refused = |r: Refusal| match r {
            Refusal::IllegalAddress | Refusal::ReadOnly => ExceptionCode::IllegalDataAddress,
        };
        let Ok(mut dev) = self.device.lock() else {
            return future::ready(Err(ExceptionCode::ServerDeviceFailure));
        };
        let unit = req.slave;
        let result = match req.request {
            Request::ReadHoldingRegisters(addr, count) => {
                dev.read(unit, addr, count).map(Response::ReadHoldingRegisters).map_err(refused)
            }
            Request::WriteSingleRegister(addr, word) => dev
                .write(unit, addr, &[word], Utc::now())
                .map(|()| Response::WriteSingleRegister(addr, word))
                .map_err(refused),
            Request::WriteMultipleRegisters(addr, words) => {
                let n = u16::try_from(words.len()).unwrap_or(u16::MAX);
                dev.write(unit, addr, &words, Utc::now())
                    .map(|()| Response::WriteMultipleRegisters(addr, n))
                    .map_err(refused)
            }
            _ => Err(ExceptionCode::IllegalFunction),
        };
        future::ready(result)
    }
}

/// A running simulated home: its address, the device, and its tasks.
pub struct Running {
    /// Where it listens.
    pub addr: SocketAddr,
    /// The device (tests change it and look into it).
    pub device: Shared,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// How a simulated device serves Modbus TCP.
#[derive(Debug, Clone, Copy, Default)]
pub struct TcpOptions {
    /// Like some inverters, accept one Modbus client at a time: a second connection is closed
    /// at once while the first is open.
    pub single_client: bool,
}

fn start_clock(device: SimDevice, tick: Duration) -> (Shared, JoinHandle<()>) {
    let shared: Shared = Arc::new(Mutex::new(device));
    if let Ok(mut d) = shared.lock() {
        d.tick(Utc::now());
    }
    let clock = {
        let shared = Arc::clone(&shared);
        tokio::spawn(async move {
            let mut every = tokio::time::interval(tick);
            loop {
                every.tick().await;
                if let Ok(mut d) = shared.lock() {
                    d.tick(Utc::now());
                }
            }
        })
    };
    (shared, clock)
}

/// Serves `device` on `listener` and advances its physics every `tick`.
pub fn spawn(listener: TcpListener, device: SimDevice, tick: Duration) -> std::io::Result<Running> {
    spawn_with(listener, device, tick, TcpOptions::default())
}

/// As [`spawn`], with options.
pub fn spawn_with(
    listener: TcpListener,
    device: SimDevice,
    tick: Duration,
    options: TcpOptions,
) -> std::io::Result<Running> {
    let addr = listener.local_addr()?;
    let (shared, clock) = start_clock(device, tick);
    let open = Arc::new(AtomicUsize::new(0));
    let serve = {
        let shared = Arc::clone(&shared);
        tokio::spawn(async move {
            let server = Server::new(listener);
            let on_connected = |stream, socket_addr| {
                let shared = Arc::clone(&shared);
                let open = Arc::clone(&open);
                async move {
                    accept_tcp_connection(stream, socket_addr, move |peer| {
                        let before = open.fetch_add(1, Ordering::SeqCst);
                        let connection = Connection(Arc::clone(&open));
                        if options.single_client && before > 0 {
                            tracing::debug!(%peer, "second Modbus client refused (single-client device)");
                            return Ok(None);
                        }
                        Ok(Some(DeviceService {
                            device: Arc::clone(&shared),
                            _connection: Some(Arc::new(connection)),
                        }))
                    })
                }
            };
            if let Err(e) =
                server.serve(&on_connected, |e| tracing::debug!(error = %e, "modbus connection ended")).await
            {
                tracing::warn!(error = %e, "modbus server stopped");
            }
        })
    };
    Ok(Running { addr, device: shared, tasks: vec![clock, serve] })
}

/// Serves `device` as Modbus RTU on the serial line at `path` (8 data bits, no parity, one stop
/// bit at `baud`), answering every unit id it has, and advances its physics every `tick`.
///
/// # Errors
/// The serial line cannot be opened.
pub fn spawn_rtu(path: &str, baud: u32, device: SimDevice, tick: Duration) -> std::io::Result<RunningRtu> {
    let builder = tokio_serial::new(path, baud);
    let port = tokio_serial::SerialStream::open(&builder).map_err(std::io::Error::other)?;
    let (shared, clock) = start_clock(device, tick);
    let serve = {
        let service = DeviceService { device: Arc::clone(&shared), _connection: None };
        tokio::spawn(async move {
            let server = tokio_modbus::server::rtu::Server::new(port);
            if let Err(e) = server.serve_forever(service).await {
                tracing::warn!(error = %e, "modbus RTU server stopped");
            }
        })
    };
    Ok(RunningRtu { device: shared, tasks: vec![clock, serve] })
}

/// A simulated home on a serial line.
pub struct RunningRtu {
    /// The device (tests change it and look into it).
    pub device: Shared,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for RunningRtu {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}
