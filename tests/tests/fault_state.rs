//! Faults of the device's own state and process: a lost or damaged manifest cache, a
//! `kill -9` in the middle of writing it, and a new agent started while the old one is
//! still exiting.

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use edgewire::manifest::NetworkPublicKey;
use edgewire::state::trust::TrustFile;
use edgewire_lab::worlds::{HUB_OVERLAY, OneHub};
use edgewire_lab::*;

const T: Duration = Duration::from_secs(20);
const CACHE: &str = "manifest.cache";
const SERIAL: &str = "manifest.serial";

/// hub-1 running, dev-a polling every second and in its overlay (it has pinged hub-1).
fn started(lab: &Lab) -> OneHub {
    let mut world = OneHub::new(lab, None);
    let src = world.source(1);
    world.publish(&src);
    world.start_hub(&src);
    world.start_dev(&[]);
    world.dev_host.ping(HUB_OVERLAY, T).unwrap();
    world
}

/// The serial file says "accepted", not "in force"; a fetch of that
/// same serial must be applied when nothing is. About 20 s.
#[test]
fn a_device_whose_cache_is_lost_or_damaged_is_back_in_its_overlay_within_one_poll() {
    require_root!();
    let lab = Lab::new("fault-lost-cache");
    let mut world = started(&lab);
    let state = world.dev.state_dir().to_path_buf();
    for (what, damage) in [
        (
            "deleted",
            (|p: &Path| fs::remove_file(p)) as fn(&Path) -> std::io::Result<()>,
        ),
        ("damaged", |p: &Path| {
            let mut bytes = fs::read(p)?;
            let mid = bytes.len() / 2;
            bytes[mid] ^= 0xff;
            fs::write(p, bytes)
        }),
    ] {
        world.dev.stop();
        assert!(state.join(SERIAL).is_file(), "the serial file is kept");
        damage(&state.join(CACHE)).unwrap_or_else(|e| panic!("{what} cache: {e}"));
        let t0 = Instant::now();
        world.start_dev(&[]);
        // One poll (1 s) after the start, plus a handshake and a loaded machine's slack.
        let back = world.dev_host.ping(HUB_OVERLAY, Duration::from_secs(10));
        eprintln!("cache {what}: back in the overlay after {:?}", t0.elapsed());
        assert!(
            back.is_ok(),
            "with its cache {what} and its serial file kept, dev-a is not back in its \
             overlay 10 s after a restart (it polls every second):\n{}",
            world.dev.log()
        );
    }
}

/// What the state directory holds now: the cache opens with the network key and its
/// serial is at least the one recorded (the cache is written first).
fn check_state(state: &Path, key: &NetworkPublicKey, round: usize) -> u64 {
    let raw = fs::read(state.join(CACHE))
        .unwrap_or_else(|e| panic!("round {round}: reading the cache: {e}"));
    let cached = edgewire::manifest::open(&raw, std::slice::from_ref(key))
        .unwrap_or_else(|e| panic!("round {round}: the cache does not open: {e}"));
    let trust = TrustFile::load(state)
        .unwrap_or_else(|e| panic!("round {round}: the serial file does not load: {e}"));
    let highest = trust.highest().unwrap_or(0);
    assert!(
        cached.serial >= highest,
        "round {round}: the cache holds serial {} but serial {highest} is recorded",
        cached.serial
    );
    cached.serial
}

/// Every round publishes a new serial and starts dev-a, which fetches it at once and
/// rewrites its cache and serial file; the test watches the state directory and sends
/// SIGKILL the moment a temporary file of the atomic write appears (or, when the write
/// was too quick to see, right after the new serial is logged) — every other round, so
/// the cache also moves on between kills. After each kill the
/// state must load; at the end dev-a boots from it with the manifest server gone.
/// About 1–2 minutes.
#[test]
fn kill_9_during_cache_writes_leaves_a_state_that_loads() {
    require_root!();
    const ROUNDS: usize = 50;
    let lab = Lab::new("fault-kill9-cache");
    let mut world = started(&lab);
    let state = world.dev.state_dir().to_path_buf();
    let key: NetworkPublicKey = world.key.public.parse().expect("the network key parses");
    let mut mid_write = 0;
    let mut serials = Vec::new();
    for round in 0..ROUNDS {
        world.dev.stop();
        let serial = round as u64 + 2;
        world.publish(&world.source(serial));
        world.start_dev(&[]);
        // This process's temporary files only: earlier kills leave theirs behind.
        let tmp_suffix = format!(".tmp-{}", world.dev.proc().pid());
        let deadline = Instant::now() + T;
        let mut saw_tmp = false;
        // Tight on purpose: a write lasts a few milliseconds.
        while Instant::now() < deadline {
            saw_tmp = fs::read_dir(&state)
                .map(|d| {
                    d.flatten()
                        .any(|e| e.file_name().to_string_lossy().ends_with(&tmp_suffix))
                })
                .unwrap_or(false);
            if saw_tmp
                || world
                    .dev
                    .log()
                    .contains(&format!("serial {serial} applied"))
            {
                break;
            }
            std::thread::yield_now();
        }
        world.dev.proc().signal(libc::SIGKILL);
        world
            .dev
            .proc()
            .wait_exit(T)
            .expect("dev-a dies on SIGKILL");
        mid_write += usize::from(saw_tmp && round % 2 == 0);
        serials.push(check_state(&state, &key, round));
    }
    let leftovers: Vec<String> = fs::read_dir(&state)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".tmp-"))
        .collect();
    eprintln!(
        "{ROUNDS} SIGKILLs, {mid_write} of them while this agent's temporary file existed; cached serials went \
         {:?} … {:?}; temporary files left: {leftovers:?}",
        serials.first(),
        serials.last()
    );
    // Boot from what is left, with no manifest server to help.
    world.dev.stop();
    world.server.stop();
    world.start_dev(&[]);
    world
        .dev
        .wait_log("starting from the cached manifest", T)
        .unwrap_or_else(|| panic!("dev-a did not start from its cache:\n{}", world.dev.log()));
    world.dev_host.ping(HUB_OVERLAY, T).unwrap();
    assert!(
        !world.dev.log().contains("is not usable"),
        "{}",
        world.dev.log()
    );
}

/// Stale `.NAME.tmp-PID` files of the atomic writes are removed at
/// start. About 15 s.
#[test]
fn temporary_files_left_by_a_crash_are_removed_at_start() {
    require_root!();
    let lab = Lab::new("fault-stale-tmp");
    let mut world = started(&lab);
    world.dev.stop();
    let state = world.dev.state_dir().to_path_buf();
    let stale = [".manifest.cache.tmp-999999", ".manifest.serial.tmp-999998"];
    for name in stale {
        fs::write(state.join(name), b"half a write").unwrap();
    }
    world.start_dev(&[]);
    world.dev_host.ping(HUB_OVERLAY, T).unwrap();
    let left: Vec<&str> = stale
        .into_iter()
        .filter(|n| state.join(n).exists())
        .collect();
    assert!(left.is_empty(), "still in {}: {left:?}", state.display());
}

/// `run` waits a few seconds for its TUN name and its UDP port while another agent still
/// holds them. The old agent is frozen (SIGSTOP) while the new one starts, so the overlap
/// is certain, then let go with SIGTERM.
#[test]
fn a_new_agent_started_while_the_old_one_is_exiting_comes_up() {
    require_root!();
    let lab = Lab::new("fault-restart-overlap");
    let mut world = started(&lab);
    // The old agent, still holding its port, leaves the world's hands: the new one
    // takes dev-a's place.
    let old = world.dev.take_proc().expect("dev-a runs");
    old.signal(libc::SIGSTOP);
    world.start_dev(&[]);
    // Until the new agent has said something (it is past its start-up) or 2 s.
    poll_until(Duration::from_secs(2), || {
        (!world.dev.log().is_empty() || !world.dev.is_running()).then_some(())
    });
    old.signal(libc::SIGTERM);
    old.signal(libc::SIGCONT);
    old.wait_exit(T).expect("the old agent exits on SIGTERM");
    let up = world.dev_host.ping(HUB_OVERLAY, T);
    let log = world.dev.log();
    assert!(
        !log.contains("Address already in use"),
        "the new agent gave up on a port the old one was releasing:\n{log}"
    );
    assert!(world.dev.is_running(), "the new agent exited:\n{log}");
    assert!(
        up.is_ok(),
        "the new agent is not in the overlay: {up:?}\n{log}"
    );
}
