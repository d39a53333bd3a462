//! The trust rules, each as a case: rollback, same serial, expiry with and without a
//! synchronised clock, manifests without a serial, and the state file on disk.

use super::*;
use crate::fsutil::TestDir;
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
fn state_at(dir: &TestDir, serial: u64, raw: &[u8]) -> TrustState {
    let mut state = TrustState::load(&dir.0).unwrap();
    state.accept(&with_serial(serial), raw).unwrap();
    state
}

#[test]
fn a_new_device_accepts_any_serial() {
    let dir = TestDir::new("trust-new");
    let state = TrustState::load(&dir.0).unwrap();
    assert_eq!(state.highest(), None);
    let verdict = state.check(&with_serial(7), b"m7", None, &synced(), 0);
    assert_eq!(verdict, Ok(Verdict::Accept { warnings: vec![] }));
}

#[test]
fn a_lower_serial_is_a_rollback() {
    let dir = TestDir::new("trust-rollback");
    let state = state_at(&dir, 5, b"m5");
    let refusal = state.check(&with_serial(4), b"m4", None, &synced(), 0);
    assert_eq!(refusal, Err(Refusal::Rollback { got: 4, have: 5 }));
    let text = refusal.unwrap_err().to_string();
    assert!(text.contains("serial 4 is lower than serial 5"), "{text}");
}

#[test]
fn the_same_serial_with_other_bytes_is_refused_and_with_the_same_bytes_is_unchanged() {
    let dir = TestDir::new("trust-same");
    let state = state_at(&dir, 5, b"m5");
    assert_eq!(
        state.check(&with_serial(5), b"m5-other", None, &synced(), 0),
        Err(Refusal::SameSerialDifferentContent { serial: 5 })
    );
    // Known from the recorded digest even without the bytes in force (boot, no cache).
    assert_eq!(
        state.check(&with_serial(5), b"m5", None, &synced(), 0),
        Ok(Verdict::Unchanged)
    );
    assert_eq!(
        state.check(&with_serial(5), b"m5", Some(b"m5"), &synced(), 0),
        Ok(Verdict::Unchanged)
    );
}

#[test]
fn a_higher_serial_is_accepted_and_recorded_across_restarts() {
    let dir = TestDir::new("trust-higher");
    let mut state = state_at(&dir, 5, b"m5");
    let verdict = state.check(&with_serial(6), b"m6", Some(b"m5"), &synced(), 0);
    assert_eq!(verdict, Ok(Verdict::Accept { warnings: vec![] }));
    state.accept(&with_serial(6), b"m6").unwrap();
    let reloaded = TrustState::load(&dir.0).unwrap();
    assert_eq!(reloaded.highest(), Some(6));
    assert!(
        reloaded
            .check(&with_serial(5), b"m5", None, &synced(), 0)
            .is_err()
    );
    let text = std::fs::read_to_string(dir.path(TRUST_FILE)).unwrap();
    assert!(text.starts_with("6 ") && text.ends_with('\n'), "{text:?}");
}

#[test]
fn accepting_a_lower_or_equal_serial_never_lowers_the_record() {
    let dir = TestDir::new("trust-never-lower");
    let mut state = state_at(&dir, 5, b"m5");
    state.accept(&with_serial(3), b"m3").unwrap();
    assert_eq!(TrustState::load(&dir.0).unwrap().highest(), Some(5));
}

#[test]
fn an_expired_manifest_is_refused_when_the_clock_is_synchronised() {
    let dir = TestDir::new("trust-expired");
    let state = TrustState::load(&dir.0).unwrap();
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
    let dir = TestDir::new("trust-unsynced");
    let state = TrustState::load(&dir.0).unwrap();
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
    let dir = TestDir::new("trust-wg");
    let mut state = state_at(&dir, 5, b"m5");
    let wg = with_serial(NO_SERIAL);
    assert_eq!(
        state.check(&wg, b"ini", None, &synced(), 0),
        Ok(Verdict::Accept { warnings: vec![] })
    );
    assert_eq!(
        state.check(&wg, b"ini", Some(b"ini"), &synced(), 0),
        Ok(Verdict::Unchanged)
    );
    state.accept(&wg, b"ini").unwrap();
    assert_eq!(TrustState::load(&dir.0).unwrap().highest(), Some(5));
}

#[test]
fn a_damaged_state_file_is_an_error_naming_it_not_a_fresh_start() {
    let dir = TestDir::new("trust-corrupt");
    for text in [
        "",
        "x y",
        "5",
        "0 00",
        "5 abc",
        &format!("5 {}", "zz".repeat(32)),
    ] {
        std::fs::write(dir.path(TRUST_FILE), text).unwrap();
        let err = TrustState::load(&dir.0).unwrap_err();
        assert!(
            matches!(err, TrustError::Corrupt { .. }),
            "{text:?}: {err:?}"
        );
        assert!(err.to_string().contains("manifest.serial"), "{err}");
    }
}
