//! Serving simulated devices over Modbus TCP (tokio-modbus), one port per home.

use std::future;
use std::net::SocketAddr;
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

#[derive(Clone)]
struct DeviceService(Shared);

impl Service for DeviceService {
    type Request = SlaveRequest<'static>;
    type Response = Response;
    type Exception = ExceptionCode;
    type Future = future::Ready<Result<Response, ExceptionCode>>;

    fn call(&self, req: Self::Request) -> Self::Future {
        let refused = |r: Refusal| match r {
            Refusal::IllegalAddress | Refusal::ReadOnly => ExceptionCode::IllegalDataAddress,
        };
        let Ok(mut dev) = self.0.lock() else {
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

/// Serves `device` on `listener` and advances its physics every `tick`.
pub fn spawn(listener: TcpListener, device: SimDevice, tick: Duration) -> std::io::Result<Running> {
    let addr = listener.local_addr()?;
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
    let serve = {
        let shared = Arc::clone(&shared);
        tokio::spawn(async move {
            let server = Server::new(listener);
            let on_connected = |stream, socket_addr| {
                let shared = Arc::clone(&shared);
                async move {
                    accept_tcp_connection(stream, socket_addr, move |_| {
                        Ok(Some(DeviceService(Arc::clone(&shared))))
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
