//! Modbus RTU over a real serial line (a pseudo-terminal pair made by socat) and inverters that
//! accept one Modbus client only, both against the project's device simulator.

#![allow(clippy::unwrap_used, reason = "tests fail loudly")]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use gridmesh_agent::sunspec::{Device, DeviceError, Endpoint, Link, SerialLine};
use gridmesh_core::{BatterySpec, GeoPoint, WattHours, Watts};
use gridmesh_sim::device::{Profile, SimDevice};
use gridmesh_sim::home::Home;
use gridmesh_sim::server::{TcpOptions, spawn_rtu, spawn_with};
use gridmesh_sunspec::{Quirks, readout};

const T: Duration = Duration::from_secs(3);

fn device(meter_unit: u8) -> SimDevice {
    let battery =
        BatterySpec { capacity: WattHours(10_000), max_charge: Watts(4_000), max_discharge: Watts(4_000) };
    let home = Home::new(Watts(8_000), Some(battery), GeoPoint { lat: 52.5, lon: 13.4 }, 42);
    SimDevice::new(home, Profile::IntScale, meter_unit, "SIM-LINK").unwrap()
}

/// Two linked pseudo-terminals: what one end writes, the other reads, like a null-modem cable.
struct PtyPair {
    child: Child,
    dir: PathBuf,
}

impl PtyPair {
    fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("gridmesh-pty-{}-{}", std::process::id(), rand_suffix()));
        std::fs::create_dir_all(&dir).unwrap();
        let child = Command::new("socat")
            .arg(format!("pty,raw,echo=0,link={}", dir.join("device").display()))
            .arg(format!("pty,raw,echo=0,link={}", dir.join("agent").display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("socat is needed for the serial-line tests (scripts/setup installs it)");
        let pair = Self { child, dir };
        for _ in 0..100 {
            if pair.end("device").exists() && pair.end("agent").exists() {
                return pair;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("socat made no pseudo-terminals in {}", pair.dir.display());
    }

    fn end(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

impl Drop for PtyPair {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn rand_suffix() -> u64 {
    use std::time::{SystemTime, UNIX_EPOCH};
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| u64::from(d.subsec_nanos()))
}

fn path_str(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

#[tokio::test]
async fn a_device_on_a_serial_line_is_discovered_read_and_controlled_over_rtu() {
    let pty = PtyPair::new();
    let sim =
        spawn_rtu(&path_str(&pty.end("device")), 19_200, device(200), Duration::from_millis(200)).unwrap();
    let link = Link::new(Endpoint::Serial(SerialLine::new(pty.end("agent"), 19_200)), T);
    // Inverter on unit 1 and meter on unit 200 over the one line, requests serialised.
    let mut inverter = Device::discover_on(Arc::clone(&link), 1).await.unwrap();
    let mut meter = Device::discover_on(Arc::clone(&link), 200).await.unwrap();
    assert_eq!(inverter.models().iter().map(|m| m.id).collect::<Vec<_>>(), vec![1, 103, 160, 123, 124, 802]);
    assert_eq!(meter.models().iter().map(|m| m.id).collect::<Vec<_>>(), vec![1, 203]);
    let (mut a, mut b) = (inverter.read_models().await.unwrap(), meter.read_models().await.unwrap());
    a.append(&mut b);
    let r = readout(&a, Quirks::default());
    assert!(r.pv_power_w.is_some() && r.grid_power_w.is_some() && r.grid_import_wh.is_some(), "{r:?}");
    // A control write travels the line and lands in the device.
    inverter.write_point(124, "InWRte", &[25]).await.unwrap();
    inverter.write_point(124, "InOutWRte_RvrtTms", &[30]).await.unwrap();
    inverter.write_point(124, "StorCtl_Mod", &[1]).await.unwrap();
    let commanded = sim.device.lock().unwrap().home().battery_command(chrono::Utc::now());
    assert_eq!(commanded, Some(Watts(1_000)));
    // A unit nobody answers for is named, with the line.
    let e = Device::discover_on(Arc::clone(&link), 9).await.unwrap_err();
    assert!(matches!(e, DeviceError::NotSunSpec { unit: 9, .. }), "{e}");
    assert!(e.to_string().ends_with(&format!("on {} unit 9", pty.end("agent").display())), "{e}");
}

#[tokio::test]
async fn a_missing_serial_line_is_named() {
    let e = Device::discover(Endpoint::Serial(SerialLine::new("/dev/gridmesh-no-such-tty", 9_600)), 1, T)
        .await
        .unwrap_err();
    assert!(
        e.to_string().starts_with("/dev/gridmesh-no-such-tty unit 1: cannot open the serial line"),
        "{e}"
    );
}

#[tokio::test]
async fn a_single_client_inverter_is_read_over_one_shared_connection() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sim =
        spawn_with(listener, device(200), Duration::from_millis(200), TcpOptions { single_client: true })
            .unwrap();
    // Inverter and meter units over one connection: both read, many times over.
    let link = Link::new(sim.addr.into(), T);
    let mut inverter = Device::discover_on(Arc::clone(&link), 1).await.unwrap();
    let mut meter = Device::discover_on(Arc::clone(&link), 200).await.unwrap();
    for _ in 0..5 {
        let (i, m) = tokio::join!(inverter.read_models(), meter.read_models());
        assert!(i.unwrap().iter().any(|b| b.id == 103));
        assert!(m.unwrap().iter().any(|b| b.id == 203));
    }
    // A second connection, as a second client would open, is turned away by such a device.
    let e = Device::discover(sim.addr, 200, T).await.unwrap_err();
    assert!(matches!(e, DeviceError::Io { .. }), "{e}");
    assert!(e.to_string().starts_with(&format!("{} unit 200: ", sim.addr)), "{e}");
}
