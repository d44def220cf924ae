//! SunSpec over real Modbus TCP against the project's own device simulator: discovery of both
//! profiles and of a meter on unit 200, scale factors changed at run time, sentinels, control
//! writes that land in the device and revert after their timer, clear errors.

#![allow(clippy::unwrap_used, reason = "tests fail loudly")]

use std::time::Duration;

use chrono::Utc;
use gridmesh_agent::sunspec::{Device, DeviceError};
use gridmesh_core::{BatterySpec, GeoPoint, WattHours, Watts};
use gridmesh_sim::device::{Profile, SimDevice};
use gridmesh_sim::home::Home;
use gridmesh_sim::server::{Running, spawn};
use gridmesh_sunspec::{Quirks, readout};

const T: Duration = Duration::from_secs(5);

async fn sim(profile: Profile, meter_unit: u8) -> Running {
    let battery =
        BatterySpec { capacity: WattHours(10_000), max_charge: Watts(4_000), max_discharge: Watts(4_000) };
    let home = Home::new(Watts(8_000), Some(battery), GeoPoint { lat: 52.5, lon: 13.4 }, 42);
    let device = SimDevice::new(home, profile, meter_unit, "SIM-TEST").unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    spawn(listener, device, Duration::from_millis(200)).unwrap()
}

fn ids(d: &Device) -> Vec<u16> {
    d.models().iter().map(|m| m.id).collect()
}

#[tokio::test]
async fn the_integer_profile_is_discovered_and_read() {
    let s = sim(Profile::IntScale, 1).await;
    let mut d = Device::discover(s.addr, 1, T).await.unwrap();
    assert_eq!(ids(&d), vec![1, 103, 160, 123, 124, 802, 203]);
    assert_eq!(d.models()[0].address, 40_002);
    let blocks = d.read_models().await.unwrap();
    let r = readout(&blocks, Quirks::default());
    assert!(r.pv_power_w.is_some() && r.grid_power_w.is_some() && r.grid_import_wh.is_some(), "{r:?}");
    assert_eq!(r.battery_soc_bp.map(|s| s / 100), Some(50), "a new home's battery is half full");
    // Points the device does not implement are absent, never 65535 or -32768.
    let inverter = blocks.iter().find(|b| b.id == 103).unwrap();
    assert_eq!(inverter.number("A"), None);
    assert_eq!(inverter.number("Hz"), None);
}

#[tokio::test]
async fn the_float_profile_and_a_meter_on_unit_200() {
    let s = sim(Profile::Float, 200).await;
    let mut inverter = Device::discover(s.addr, 1, T).await.unwrap();
    assert_eq!(ids(&inverter), vec![1, 113, 701, 704, 802]);
    let mut meter = Device::discover(s.addr, 200, T).await.unwrap();
    assert_eq!(ids(&meter), vec![1, 213]);
    let mut blocks = inverter.read_models().await.unwrap();
    blocks.extend(meter.read_models().await.unwrap());
    let r = readout(&blocks, Quirks::default());
    let (pv, grid) = (r.pv_power_w.unwrap(), r.grid_power_w.unwrap());
    let truth = s.device.lock().unwrap().home().clone();
    assert!(pv >= 0 && pv <= truth.rated_pv.get(), "{pv}");
    assert!(grid.abs() < 30_000, "{grid}");
    assert!(r.grid_import_wh.unwrap() > 0);
}

#[tokio::test]
async fn a_scale_factor_changed_at_run_time_is_read_with_its_values() {
    let s = sim(Profile::IntScale, 1).await;
    let mut d = Device::discover(s.addr, 1, T).await.unwrap();
    s.device.lock().unwrap().set_power_scale(1);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let blocks = d.read_models().await.unwrap();
    let meter = blocks.iter().find(|b| b.id == 203).unwrap();
    let w = meter.number("W").unwrap();
    assert_eq!(w % 10.0, 0.0, "with W_SF = 1 the meter's power comes in tens: {w}");
    assert!(w.abs() < 30_000.0);
}

#[tokio::test]
async fn a_storage_command_lands_and_reverts_after_its_timer() {
    let s = sim(Profile::IntScale, 1).await;
    let mut d = Device::discover(s.addr, 1, T).await.unwrap();
    // Charge at 50 % of WChaMax for one second.
    d.write_point(124, "InWRte", &[50]).await.unwrap();
    d.write_point(124, "InOutWRte_RvrtTms", &[1]).await.unwrap();
    d.write_point(124, "StorCtl_Mod", &[1]).await.unwrap();
    {
        let dev = s.device.lock().unwrap();
        assert_eq!(dev.home().battery_command(Utc::now()), Some(Watts(2_000)));
    }
    let storage = |blocks: &[gridmesh_sunspec::Block]| {
        blocks.iter().find(|b| b.id == 124).unwrap().values.get("StorCtl_Mod").cloned()
    };
    assert_eq!(storage(&d.read_models().await.unwrap()), Some(gridmesh_sunspec::Value::Bits(1)));
    tokio::time::sleep(Duration::from_millis(1_600)).await;
    assert_eq!(storage(&d.read_models().await.unwrap()), Some(gridmesh_sunspec::Value::Bits(0)), "reverted");
    assert_eq!(s.device.lock().unwrap().home().battery_command(Utc::now()), None);

    // Read-only points and unknown controls are refused with the point named.
    let e = d.write_point(103, "W", &[1]).await.unwrap_err();
    assert!(e.to_string().contains("has no writable point W"), "{e}");
}

#[tokio::test]
async fn a_device_without_sunspec_is_named_in_the_error() {
    let s = sim(Profile::IntScale, 1).await;
    let e = Device::discover(s.addr, 7, T).await.unwrap_err();
    assert!(matches!(e, DeviceError::NotSunSpec { unit: 7, .. }));
    assert_eq!(e.to_string(), format!("no SunS marker at 40000, 0 or 50000 on {} unit 7", s.addr));
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let e = Device::discover(closed, 1, T).await.unwrap_err();
    assert!(e.to_string().starts_with(&format!("{closed} unit 1: ")), "{e}");
}
