//! Decoding, sentinels, scale factors, the model chain and the normalized readout.

#![allow(clippy::unwrap_used, reason = "tests fail loudly")]

use gridmesh_sunspec::{
    BASES, Block, Image, Quirks, SUNS, SunSpecError, Value, decode, known_models, model, readout, walk_image,
};
use proptest::prelude::*;

fn inverter(w: i64, w_sf: i64) -> Image {
    let mut m = Image::new(103, 0).unwrap();
    m.set_int("W", None, w).unwrap().set_int("W_SF", None, w_sf).unwrap();
    m.set_int("WH", None, 12_345_678).unwrap().set_int("WH_SF", None, 0).unwrap();
    m
}

#[test]
fn scale_factors_apply_and_may_change_at_run_time() {
    let b = decode(inverter(12_345, -1).registers()).unwrap();
    assert_eq!(b.number("W"), Some(1_234.5));
    assert_eq!(b.number("WH"), Some(12_345_678.0));
    // The device changes its scale factor: the same read carries the new one.
    let b = decode(inverter(1_234, 1).registers()).unwrap();
    assert_eq!(b.number("W"), Some(12_340.0));
}

#[test]
fn not_implemented_values_are_absent_never_sentinels() {
    // Every point of a fresh image is "not implemented".
    let b = decode(Image::new(103, 0).unwrap().registers()).unwrap();
    assert!(b.values.is_empty(), "{:?}", b.values);
    // A value whose scale factor is not implemented is absent too.
    let mut m = Image::new(103, 0).unwrap();
    m.set_int("W", None, 500).unwrap();
    assert_eq!(decode(m.registers()).unwrap().number("W"), None);
    // -32768 in an int16, 65535 in a uint16, NaN in a float.
    m.set_int("W_SF", None, 0).unwrap().set_raw("W", None, &[0x8000]).unwrap();
    assert_eq!(decode(m.registers()).unwrap().number("W"), None);
    m.set_int("A_SF", None, 0).unwrap().set_raw("A", None, &[0xFFFF]).unwrap();
    assert_eq!(decode(m.registers()).unwrap().number("A"), None);
    let mut f = Image::new(113, 0).unwrap();
    f.set_raw("W", None, &[0x7FC0, 0]).unwrap();
    assert_eq!(decode(f.registers()).unwrap().number("W"), None);
    f.set_f32("W", 4_200.5).unwrap();
    assert_eq!(decode(f.registers()).unwrap().number("W"), Some(4_200.5));
    // A scale factor out of SunSpec's -10..=10 makes the value unreadable, not huge.
    let mut m = inverter(1, 0);
    m.set_int("W_SF", None, 40).unwrap();
    assert_eq!(decode(m.registers()).unwrap().number("W"), None);
}

#[test]
fn common_model_text_and_enums() {
    let mut c = Image::new(1, 0).unwrap();
    c.set_text("Mn", "gridmesh").unwrap().set_text("SN", "SIM-0001").unwrap();
    let b = decode(c.registers()).unwrap();
    assert_eq!(b.values.get("Mn"), Some(&Value::Text("gridmesh".into())));
    assert_eq!(b.values.get("SN"), Some(&Value::Text("SIM-0001".into())));
    assert!(c.set_text("Mn", &"x".repeat(33)).is_err(), "longer than the point");
}

#[test]
fn mppt_modules_repeat() {
    let mut m = Image::new(160, 2).unwrap();
    m.set_int("DCW_SF", None, 0).unwrap();
    m.set_int("DCW", Some(0), 1_500).unwrap().set_int("DCW", Some(1), 2_100).unwrap();
    let b = decode(m.registers()).unwrap();
    assert_eq!(b.repeats.len(), 2);
    assert_eq!(b.repeats[1].get("DCW"), Some(&Value::Number(2_100.0)));
}

fn device_map(models: &[Image]) -> Vec<u16> {
    let mut map = SUNS.to_vec();
    for m in models {
        map.extend_from_slice(m.registers());
    }
    map.extend_from_slice(&[0xFFFF, 0]);
    map
}

#[test]
fn the_chain_is_walked_to_the_end_marker() {
    let models = [
        Image::new(1, 0).unwrap(),
        inverter(3_000, 0),
        Image::new(203, 0).unwrap(),
        Image::new(124, 0).unwrap(),
    ];
    let map = device_map(&models);
    let found = walk_image(&map, BASES[0]).unwrap();
    assert_eq!(found.iter().map(|h| h.id).collect::<Vec<_>>(), vec![1, 103, 203, 124]);
    assert_eq!(found[0].address, 40_002);
    assert_eq!(found[1].address, 40_002 + model(1).unwrap().fixed_len);
    assert_eq!(walk_image(&map[1..], 40_000), Err(SunSpecError::NoMarker { base: 40_000 }));
    let mut cut = map.clone();
    cut.truncate(map.len() - 2);
    assert!(matches!(walk_image(&cut, 0), Err(SunSpecError::BrokenChain { .. })));
}

#[test]
fn models_become_one_site_reading() {
    let mut meter = Image::new(203, 0).unwrap();
    meter.set_int("W", None, -2_500).unwrap().set_int("W_SF", None, 0).unwrap();
    meter.set_int("TotWhImp", None, 1_000_000).unwrap().set_int("TotWhExp", None, 250_000).unwrap();
    meter.set_int("TotWh_SF", None, 0).unwrap();
    let mut storage = Image::new(124, 0).unwrap();
    storage.set_int("ChaState", None, 655).unwrap().set_int("ChaState_SF", None, -1).unwrap();
    let blocks: Vec<Block> =
        [inverter(4_000, 0), meter, storage].iter().map(|m| decode(m.registers()).unwrap()).collect();
    let r = readout(&blocks, Quirks::default());
    assert_eq!(r.pv_power_w, Some(4_000));
    assert_eq!(r.grid_power_w, Some(-2_500), "exporting");
    assert_eq!((r.grid_import_wh, r.grid_export_wh), (Some(1_000_000), Some(250_000)));
    assert_eq!(r.battery_soc_bp, Some(6_550));
    let inverted = readout(&blocks, Quirks { invert_meter: true, ..Quirks::default() });
    assert_eq!(inverted.grid_power_w, Some(2_500));
    assert_eq!((inverted.grid_import_wh, inverted.grid_export_wh), (Some(250_000), Some(1_000_000)));
}

#[test]
fn bad_registers_get_their_own_errors() {
    assert_eq!(decode(&[999, 0]), Err(SunSpecError::UnknownModel(999)));
    let regs = inverter(1, 0).registers().to_vec();
    assert!(matches!(decode(&regs[..20]), Err(SunSpecError::Truncated { model: 103, .. })));
    assert!(matches!(decode(&[103, 3, 0, 0, 0]), Err(SunSpecError::TooShort { model: 103, .. })));
    assert!(decode(&[]).is_err());
    assert_eq!(known_models().count(), 25);
}

proptest! {
    #[test]
    fn arbitrary_registers_never_panic(which in 0_usize..25, words in proptest::collection::vec(any::<u16>(), 0..200)) {
        let id = known_models().nth(which).unwrap();
        let mut regs = vec![id, u16::try_from(words.len()).unwrap()];
        regs.extend(words);
        let _ = decode(&regs);
        let mut chain = SUNS.to_vec();
        chain.extend_from_slice(&regs);
        let _ = walk_image(&chain, 0);
    }

    #[test]
    fn integers_round_trip(w in -32_767_i64..32_767, sf in -3_i64..3) {
        let b = decode(inverter(w, sf).registers()).unwrap();
        let expected = w as f64 * 10_f64.powi(sf as i32);
        prop_assert!((b.number("W").unwrap() - expected).abs() < 1e-6 * expected.abs().max(1.0));
    }
}
