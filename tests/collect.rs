//! `collect` end to end: tiny collections of both envs, determinism across thread counts, resume,
//! damaged files, impossible configs, and the `dreamplay collect` command.

use std::path::Path;
use std::process::Command;

use dreamplay::agent::AgentKind;
use dreamplay::envs::EnvKind;
use dreamplay::train::collect::{
    CollectConfig, CollectError, CollectStats, MANIFEST_FILE, collect,
};
use dreamplay::train::rollout::{Rollout, RolloutError, RolloutInfo, list_rollouts};

/// Rollouts and frames of the tiny collections: enough to show every rule, small enough to be quick.
const ROLLOUTS: usize = 3;
const STEPS: u32 = 50;

/// A fresh scratch folder per test, removed when the returned guard drops (even on a failure).
fn scratch(name: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("dreamplay-collect-{name}-"))
        .tempdir()
        .expect("scratch folder")
}

fn tiny_config(env: EnvKind, out: &Path) -> CollectConfig {
    CollectConfig {
        max_steps: STEPS,
        min_length: 10,
        ..CollectConfig::new(env, ROLLOUTS, out)
    }
}

fn run(config: &CollectConfig) -> Result<CollectStats, CollectError> {
    collect(config, &|_| {})
}

fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .expect("output folder exists")
        .map(|e| e.expect("readable entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "npz"))
        .map(|p| {
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            (name, std::fs::read(&p).expect("readable file"))
        })
        .collect();
    entries.sort();
    entries
}

/// Replays a rollout from its recorded env seed and actions and checks every frame, reward and done.
fn assert_replays(env_kind: EnvKind, rollout: &Rollout) {
    let seed = rollout.env_seed().expect("collect records the env seed");
    let mut env = env_kind.make(seed);
    let mut obs = env.reset(seed);
    for t in 0..rollout.len() {
        let frame = rollout.frame(t).expect("t < len");
        let stored = frame.as_slice().expect("frames are contiguous");
        assert_eq!(
            stored,
            obs.as_raw().as_slice(),
            "{env_kind}: obs[{t}] is not the frame before action {t}"
        );
        let action = rollout.actions().row(t).to_vec();
        let step = env.step(&action).expect("recorded actions are valid");
        assert_eq!(
            rollout.rewards()[t],
            step.reward,
            "{env_kind}: rewards[{t}]"
        );
        assert_eq!(
            rollout.dones()[t],
            u8::from(step.terminated),
            "{env_kind}: dones[{t}]"
        );
        obs = step.obs;
    }
}

#[test]
fn tiny_collections_read_back_and_replay_for_both_envs() {
    for env in EnvKind::ALL {
        let dir_guard = scratch(&format!("tiny-{env}"));
        let dir = dir_guard.path().join("rollouts");
        let config = tiny_config(env, &dir);
        let stats = run(&config).expect("collects");
        assert_eq!(
            (stats.written, stats.skipped, stats.replaced),
            (ROLLOUTS, 0, 0)
        );
        assert!(dir.join(MANIFEST_FILE).is_file());

        let listing = list_rollouts(&dir).expect("readable folder");
        assert_eq!(listing.valid.len(), ROLLOUTS);
        assert!(listing.corrupt.is_empty());
        assert_eq!(listing.frames(), stats.frames_total);
        for info in &listing.valid {
            let rollout = Rollout::read(&info.path).expect("valid");
            let steps = rollout.len();
            assert!(
                steps > 10 && steps <= STEPS as usize,
                "{env}: {steps} steps"
            );
            if env == EnvKind::CarRacing {
                assert_eq!(
                    steps, STEPS as usize,
                    "done is suppressed: every rollout runs to the end"
                );
            }
            assert_eq!(rollout.obs().shape(), [steps, 64, 64, 3]);
            assert_eq!(rollout.actions().shape(), [steps, env.action_space().len()]);
            assert_eq!(
                (rollout.rewards().len(), rollout.dones().len()),
                (steps, steps)
            );
            assert_eq!(info.len, steps);
            assert_replays(env, &rollout);
        }
        let returns: f64 = listing.valid.iter().map(|i| i.total_reward).sum();
        assert!((returns / ROLLOUTS as f64 - stats.mean_return).abs() < 1e-6);
    }
}

#[test]
fn same_seed_gives_byte_identical_files_with_one_or_two_threads() {
    for env in EnvKind::ALL {
        let one_guard = scratch(&format!("threads1-{env}"));
        let one = one_guard.path().join("rollouts");
        let two_guard = scratch(&format!("threads2-{env}"));
        let two = two_guard.path().join("rollouts");
        run(&CollectConfig {
            threads: 1,
            ..tiny_config(env, &one)
        })
        .expect("collects");
        run(&CollectConfig {
            threads: 2,
            ..tiny_config(env, &two)
        })
        .expect("collects");
        let (a, b) = (files(&one), files(&two));
        assert_eq!(a.len(), ROLLOUTS);
        assert!(a == b, "{env}: files differ between 1 and 2 threads");
        // The zip entries carry the fixed 1980-01-01 date (DOS date 0x0021 at byte 12 of the local
        // header), not the clock, so runs at different times agree too.
        assert_eq!(
            &a[0].1[12..14],
            &[0x21, 0x00],
            "{env}: zip timestamp is not fixed"
        );
        let other_seed_guard = scratch(&format!("seed1-{env}"));
        let other_seed = other_seed_guard.path().join("rollouts");
        run(&CollectConfig {
            seed: 1,
            ..tiny_config(env, &other_seed)
        })
        .expect("collects");
        assert!(files(&other_seed) != a, "{env}: the seed changes nothing");
    }
}

#[test]
fn resume_skips_valid_files_and_redoes_missing_or_damaged_ones() {
    let dir_guard = scratch("resume");
    let dir = dir_guard.path().join("rollouts");
    let config = tiny_config(EnvKind::TakeCover, &dir);
    run(&config).expect("collects");
    let original = files(&dir);

    let again = run(&config).expect("resumes");
    assert_eq!((again.written, again.skipped), (0, ROLLOUTS));
    assert_eq!(files(&dir), original);

    // Delete one, truncate one, overwrite the middle of the last with garbage.
    std::fs::remove_file(dir.join("rollout_00000.npz")).expect("exists");
    let truncated = &original[1].1[..original[1].1.len() / 2];
    std::fs::write(dir.join("rollout_00001.npz"), truncated).expect("writable");
    let mut scrambled = original[2].1.clone();
    let middle = scrambled.len() / 2;
    scrambled[middle..middle + 64].fill(0xA5);
    std::fs::write(dir.join("rollout_00002.npz"), scrambled).expect("writable");

    let redone = Vec::new();
    let redone = std::sync::Mutex::new(redone);
    let stats = collect(&config, &|event| {
        if let dreamplay::train::collect::CollectEvent::Redoing { index, .. } = event {
            redone.lock().expect("no panics while locked").push(index);
        }
    })
    .expect("resumes");
    assert_eq!((stats.written, stats.replaced, stats.skipped), (3, 2, 0));
    let mut redone = redone.into_inner().expect("no panics while locked");
    redone.sort();
    assert_eq!(redone, [1, 2]);
    assert_eq!(files(&dir), original, "redone rollouts are the same bytes");
}

#[test]
fn resuming_with_a_different_config_is_an_error() {
    let dir_guard = scratch("mismatch");
    let dir = dir_guard.path().join("rollouts");
    let config = tiny_config(EnvKind::TakeCover, &dir);
    run(&config).expect("collects");
    let err = run(&CollectConfig {
        policy: AgentKind::Uniform,
        ..config.clone()
    })
    .expect_err("other policy");
    assert!(matches!(err, CollectError::ConfigMismatch { .. }), "{err}");
    assert!(
        err.to_string().contains("policy held") && err.to_string().contains("policy uniform"),
        "{err}"
    );
    // More rollouts or other threads are the same collection.
    let stats = run(&CollectConfig {
        rollouts: ROLLOUTS + 1,
        threads: 1,
        ..config
    })
    .expect("extends");
    assert_eq!((stats.written, stats.skipped), (1, ROLLOUTS));
}

#[test]
fn truncated_and_garbage_files_give_errors_naming_the_file() {
    let dir_guard = scratch("damaged");
    let dir = dir_guard.path().join("rollouts");
    let config = CollectConfig {
        rollouts: 1,
        ..tiny_config(EnvKind::CarRacing, &dir)
    };
    run(&config).expect("collects");
    let good = std::fs::read(dir.join("rollout_00000.npz")).expect("written");

    let truncated = dir.join("truncated.npz");
    std::fs::write(&truncated, &good[..good.len() - 100]).expect("writable");
    let garbage = dir.join("garbage.npz");
    std::fs::write(&garbage, b"PK\x03\x04 this is not really a zip file at all").expect("writable");
    let empty = dir.join("empty.npz");
    std::fs::write(&empty, b"").expect("writable");
    let missing = dir.join("missing.npz");

    for path in [&truncated, &garbage, &empty, &missing] {
        let full = Rollout::read(path).expect_err("damaged");
        let cheap = RolloutInfo::read(path).expect_err("damaged");
        for err in [&full, &cheap] {
            assert_eq!(err.path(), path.as_path());
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            assert!(err.to_string().contains(&name), "{err}");
        }
    }
    assert!(matches!(
        Rollout::read(&missing),
        Err(RolloutError::Open { .. })
    ));

    let listing = list_rollouts(&dir).expect("readable folder");
    assert_eq!(listing.valid.len(), 1);
    assert_eq!(listing.corrupt.len(), 3, "{:?}", listing.corrupt);
}

#[test]
fn impossible_configs_and_write_failures_are_clear_errors() {
    let dir_guard = scratch("impossible");
    let dir = dir_guard.path().join("rollouts");
    let zero = CollectConfig {
        rollouts: 0,
        ..tiny_config(EnvKind::TakeCover, &dir)
    };
    assert!(matches!(run(&zero), Err(CollectError::NoRollouts)));
    assert!(!dir.exists(), "a rejected config creates nothing");

    // An output folder under a plain file cannot be created.
    std::fs::create_dir_all(&dir).expect("writable");
    let blocker = dir.join("a-file");
    std::fs::write(&blocker, b"x").expect("writable");
    let err =
        run(&tiny_config(EnvKind::TakeCover, &blocker.join("out"))).expect_err("not creatable");
    assert!(matches!(err, CollectError::OutputDir { .. }), "{err}");

    // A rollout that cannot be written (here a folder squats its name) stops the run with the file named.
    let out = dir.join("out");
    std::fs::create_dir_all(out.join("rollout_00001.npz")).expect("writable");
    let err = run(&tiny_config(EnvKind::TakeCover, &out)).expect_err("unwritable");
    assert!(
        matches!(err, CollectError::Rollout { index: 1, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("rollout_00001.npz"), "{err}");
    assert!(
        !out.join("rollout_00001.npz.tmp").exists(),
        "the temp file is cleaned up"
    );

    // A min length no episode can reach.
    let unreachable = CollectConfig {
        max_steps: 50,
        min_length: 50,
        ..tiny_config(EnvKind::TakeCover, &dir)
    };
    assert!(matches!(
        run(&unreachable),
        Err(CollectError::MinLengthUnreachable { .. })
    ));
}

#[test]
fn take_cover_redraws_short_episodes_deterministically() {
    let dir_guard = scratch("min-length");
    let dir = dir_guard.path().join("rollouts");
    // Random play lives 210 +- 125 frames, so a 250-frame minimum rejects many episodes.
    let config = CollectConfig {
        max_steps: 400,
        min_length: 250,
        rollouts: 4,
        ..CollectConfig::new(EnvKind::TakeCover, 4, &dir)
    };
    let stats = run(&config).expect("collects");
    assert!(stats.rejected > 0, "no episode was re-drawn");
    let listing = list_rollouts(&dir).expect("readable folder");
    assert!(
        listing.valid.iter().all(|info| info.len > 250),
        "{:?}",
        listing.valid
    );
    let again_dir_guard = scratch("min-length-again");
    let again_dir = again_dir_guard.path().join("rollouts");
    let again = run(&CollectConfig {
        out_dir: again_dir.clone(),
        threads: 1,
        ..config
    })
    .expect("collects");
    assert_eq!(again.rejected, stats.rejected);
    assert!(files(&dir) == files(&again_dir));
}

#[test]
fn the_command_collects_resumes_and_reports() {
    let dir_guard = scratch("cli");
    let dir = dir_guard.path().join("rollouts");
    let out = dir.to_string_lossy().into_owned();
    let args = [
        "collect",
        "--env",
        "take-cover",
        "--rollouts",
        "2",
        "--out",
        &out,
        "--max-steps",
        "40",
        "--min-length",
        "5",
    ];
    let first = Command::new(env!("CARGO_BIN_EXE_dreamplay"))
        .args(args)
        .output()
        .expect("runs");
    let stdout = String::from_utf8_lossy(&first.stdout);
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    assert!(stdout.contains("2 rollouts written, 0 skipped"), "{stdout}");
    assert!(stdout.contains("data set: 2 rollouts"), "{stdout}");
    assert_eq!(list_rollouts(&dir).expect("readable").valid.len(), 2);

    let second = Command::new(env!("CARGO_BIN_EXE_dreamplay"))
        .args(args)
        .output()
        .expect("runs");
    assert!(String::from_utf8_lossy(&second.stdout).contains("0 rollouts written, 2 skipped"));

    let bad = Command::new(env!("CARGO_BIN_EXE_dreamplay"))
        .args([
            "collect",
            "--env",
            "take-cover",
            "--rollouts",
            "0",
            "--out",
            &out,
        ])
        .output()
        .expect("runs");
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("number of rollouts is 0"));

    let bad_policy = Command::new(env!("CARGO_BIN_EXE_dreamplay"))
        .args([
            "collect",
            "--env",
            "car-racing",
            "--rollouts",
            "1",
            "--out",
            &out,
            "--policy",
            "greedy",
        ])
        .output()
        .expect("runs");
    assert!(!bad_policy.status.success());
    assert!(
        String::from_utf8_lossy(&bad_policy.stderr).contains("brownian"),
        "lists the valid policies"
    );
}
