//! The trust rules, each as a case: rollback, same serial, expiry with and without a
//! synchronised clock, manifests without a serial, the recorded manifest when it is not
//! in force, and the record's text. The file on disk is tested in `state/trust.rs`.

use super::*;
use crate::manifest::fixtures::lab_manifest;

const EXPIRES: u64 = 1_798_761_600;

fn synced() -> ClockTrust {
    ClockTrust::Synchronised("test".into())
}

fn unsynced() -> ClockTrust {
    ClockTrust::Unsynchronised("clock not synchronised (booted in 1970?)".into())
}

fn with_serial(serial: u64) -> Manifest {
    Manifest {
        serial,
        ..lab_manifest()
    }
}

/// A state that has accepted `serial` with the bytes `raw`.
fn state_at(serial: u64, raw: &[u8]) -> TrustState {
    TrustState::default()
        .after_accepting(&with_serial(serial), raw)
        .unwrap()
}

#[test]
fn a_new_device_accepts_any_serial() {
    let state = TrustState::default();
    assert_eq!(state.highest(), None);
    let verdict = state.check(&with_serial(7), b"m7", None, &synced(), 0);
    assert_eq!(verdict, Ok(Verdict::Accept { warnings: vec![] }));
}

#[test]
fn a_lower_serial_is_a_rollback() {
    let state = state_at(5, b"m5");
    let refusal = state.check(&with_serial(4), b"m4", None, &synced(), 0);
    assert_eq!(refusal, Err(Refusal::Rollback { got: 4, have: 5 }));
    let text = refusal.unwrap_err().to_string();
    assert!(text.contains("serial 4 is lower than serial 5"), "{text}");
}

#[test]
fn the_same_serial_with_other_bytes_is_refused() {
    let state = state_at(5, b"m5");
    assert_eq!(
        state.check(&with_serial(5), b"m5-other", None, &synced(), 0),
        Err(Refusal::SameSerialDifferentContent { serial: 5 })
    );
    assert_eq!(
        state.check(&with_serial(5), b"m5-other", Some(b"m5"), &synced(), 0),
        Err(Refusal::SameSerialDifferentContent { serial: 5 })
    );
}

#[test]
fn the_bytes_in_force_are_unchanged() {
    let state = state_at(5, b"m5");
    assert_eq!(
        state.check(&with_serial(5), b"m5", Some(b"m5"), &synced(), 0),
        Ok(Verdict::Unchanged)
    );
}

/// The record says which manifest was accepted, not that it is in force. With
/// the cache lost or damaged nothing is in force, and the recorded manifest must be put
/// in force again when the server sends it, or the device stays offline for good.
#[test]
fn the_recorded_manifest_is_restored_when_it_is_not_in_force() {
    let state = state_at(5, b"m5");
    assert_eq!(
        state.check(&with_serial(5), b"m5", None, &synced(), 0),
        Ok(Verdict::Restore { warnings: vec![] })
    );
    // Something else in force (a serial-less manifest before): still restored.
    assert_eq!(
        state.check(&with_serial(5), b"m5", Some(b"ini"), &synced(), 0),
        Ok(Verdict::Restore { warnings: vec![] })
    );
    // Restoring changes nothing in the record.
    assert_eq!(state.after_accepting(&with_serial(5), b"m5"), None);
}

#[test]
fn a_higher_serial_is_accepted_and_replaces_the_record() {
    let state = state_at(5, b"m5");
    let verdict = state.check(&with_serial(6), b"m6", Some(b"m5"), &synced(), 0);
    assert_eq!(verdict, Ok(Verdict::Accept { warnings: vec![] }));
    let state = state.after_accepting(&with_serial(6), b"m6").unwrap();
    assert_eq!(state.highest(), Some(6));
    assert!(
        state
            .check(&with_serial(5), b"m5", None, &synced(), 0)
            .is_err()
    );
}

#[test]
fn accepting_a_lower_or_equal_serial_never_lowers_the_record() {
    let state = state_at(5, b"m5");
    assert_eq!(state.after_accepting(&with_serial(3), b"m3"), None);
    assert_eq!(state.after_accepting(&with_serial(5), b"m5x"), None);
    assert_eq!(state.highest(), Some(5));
}

#[test]
fn an_expired_manifest_is_refused_when_the_clock_is_synchronised() {
    let state = TrustState::default();
    let m = with_serial(2);
    assert_eq!(
        state.check(&m, b"m", None, &synced(), EXPIRES),
        Err(Refusal::Expired {
            serial: 2,
            at: EXPIRES
        })
    );
    let text = state
        .check(&m, b"m", None, &synced(), EXPIRES)
        .unwrap_err()
        .to_string();
    assert!(text.contains("expired at 2027-01-01T00:00:00Z"), "{text}");
    assert!(state.check(&m, b"m", None, &synced(), EXPIRES - 1).is_ok());
}

#[test]
fn an_expired_manifest_is_accepted_with_a_warning_when_the_clock_is_not_synchronised() {
    let state = TrustState::default();
    let Ok(Verdict::Accept { warnings }) =
        state.check(&with_serial(2), b"m", None, &unsynced(), EXPIRES + 10)
    else {
        panic!("not accepted");
    };
    assert_eq!(warnings.len(), 1);
    assert!(
        warnings[0].contains("clock not synchronised (booted in 1970?): expiry not enforced"),
        "{}",
        warnings[0]
    );
}

#[test]
fn a_manifest_without_a_serial_is_judged_by_its_bytes_and_never_recorded() {
    let state = state_at(5, b"m5");
    let wg = with_serial(NO_SERIAL);
    assert_eq!(
        state.check(&wg, b"ini", None, &synced(), 0),
        Ok(Verdict::Accept { warnings: vec![] })
    );
    assert_eq!(
        state.check(&wg, b"ini", Some(b"ini"), &synced(), 0),
        Ok(Verdict::Unchanged)
    );
    assert_eq!(state.after_accepting(&wg, b"ini"), None);
}

#[test]
fn the_record_round_trips_through_its_text_and_damaged_text_is_refused() {
    let state = state_at(6, b"m6");
    let text = state.to_text().unwrap();
    assert!(text.starts_with("6 ") && text.ends_with('\n'), "{text:?}");
    assert_eq!(TrustState::parse(text.as_bytes()), Ok(state));
    assert_eq!(TrustState::default().to_text(), None);
    for text in [
        "",
        "x y",
        "5",
        "0 00",
        "5 abc",
        &format!("5 {}", "zz".repeat(32)),
    ] {
        assert!(TrustState::parse(text.as_bytes()).is_err(), "{text:?}");
    }
}
