//! The `dreamplay` binary end to end: episodes, traces, GIFs and bad input.

use std::io::Write;
use std::process::{Command, Output, Stdio};

fn dreamplay(args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_dreamplay"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the dreamplay binary was built by cargo test");
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(stdin.as_bytes())
        .expect("the child reads stdin");
    child.wait_with_output().expect("the child runs to the end")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `dreamplay inspect path`'s JSON report, which must succeed.
fn inspect_report(path: &str) -> serde_json::Value {
    let out = dreamplay(&["inspect", path], "");
    assert!(out.status.success(), "{}", text(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("JSON on stdout")
}

/// The part names a reported header lists, in order.
fn part_names(header: &serde_json::Value) -> Vec<&str> {
    header["parts"]
        .as_array()
        .expect("a parts list")
        .iter()
        .map(|p| p["part"].as_str().expect("a part name"))
        .collect()
}

#[test]
fn env_run_prints_returns_and_lengths_for_both_envs() {
    for env in ["car-racing", "take-cover"] {
        let out = dreamplay(
            &["env", "run", "--env", env, "--episodes", "2", "--seed", "3"],
            "",
        );
        let stdout = text(&out.stdout);
        assert!(out.status.success(), "{env}: {}", text(&out.stderr));
        assert!(stdout.contains("episode 0 seed 3: return"), "{stdout}");
        assert!(stdout.contains("episode 1 seed 4: return"), "{stdout}");
        assert!(stdout.contains("2 episodes: return"), "{stdout}");
    }
}

#[test]
fn env_run_is_deterministic_under_a_seed() {
    let args = [
        "env",
        "run",
        "--env",
        "take-cover",
        "--episodes",
        "3",
        "--seed",
        "11",
    ];
    let first = dreamplay(&args, "");
    let second = dreamplay(&args, "");
    assert!(first.status.success());
    assert_eq!(first.stdout, second.stdout);
}

#[test]
fn env_run_records_a_gif() {
    let dir = tempfile::Builder::new()
        .prefix("dreamplay-cli-gif-")
        .tempdir()
        .expect("scratch folder");
    let gif = dir.path().join("take-cover.gif");
    let out = dreamplay(
        &[
            "env",
            "run",
            "--env",
            "take-cover",
            "--seed",
            "1",
            "--gif",
            gif.to_str().unwrap(),
            "--size",
            "64",
            "--every",
            "8",
        ],
        "",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let bytes = std::fs::read(&gif).expect("the GIF was written");
    assert_eq!(&bytes[..6], b"GIF89a");
    let decoder = image::codecs::gif::GifDecoder::new(std::io::Cursor::new(bytes)).unwrap();
    let frames = image::AnimationDecoder::into_frames(decoder)
        .collect_frames()
        .unwrap();
    assert!(frames.len() > 3, "only {} frames", frames.len());
    assert_eq!(frames[0].buffer().dimensions(), (64, 64));
}

#[test]
fn trace_prints_one_json_line_per_step_with_the_physical_state() {
    let out = dreamplay(
        &["env", "trace", "--env", "car-racing", "--seed", "5"],
        "0,1,0\n[0.5, 1, 0]\n\n{\"action\": [-0.5, 0, 0.2]}\n",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let lines: Vec<serde_json::Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is JSON"))
        .collect();
    assert_eq!(lines.len(), 4, "a reset line and three steps");
    assert_eq!(lines[0]["step"], 0);
    for (i, line) in lines.iter().enumerate().skip(1) {
        assert_eq!(line["step"], i);
        assert!(line["reward"].is_number());
        assert_eq!(line["terminated"], false);
        assert_eq!(line["truncated"], false);
        assert!(line["state"].is_object(), "state missing in {line}");
    }
}

#[test]
fn trace_of_the_same_actions_is_byte_identical() {
    let actions = "-1\n1\n0.2\n1\n1\n-0.9\n".repeat(20);
    let first = dreamplay(
        &["env", "trace", "--env", "take-cover", "--seed", "2"],
        &actions,
    );
    let second = dreamplay(
        &["env", "trace", "--env", "take-cover", "--seed", "2"],
        &actions,
    );
    assert!(first.status.success(), "{}", text(&first.stderr));
    assert_eq!(first.stdout, second.stdout);
}

#[test]
fn malformed_trace_line_is_a_clear_error_naming_the_line() {
    let out = dreamplay(
        &["env", "trace", "--env", "car-racing"],
        "0,1,0\n0,banana,0\n0,1,0\n",
    );
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(stderr.contains("line 2"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    // The step before the bad line was still printed.
    assert_eq!(text(&out.stdout).lines().count(), 2);
}

#[test]
fn non_finite_and_wrong_length_actions_are_rejected_without_panic() {
    for (env, input) in [
        ("car-racing", "NaN,1,0\n"),
        ("car-racing", "0,1\n"),
        ("take-cover", "inf\n"),
        ("take-cover", "[1, 0]\n"),
    ] {
        let out = dreamplay(&["env", "trace", "--env", env], input);
        let stderr = text(&out.stderr);
        assert!(!out.status.success(), "{env} {input:?} should fail");
        assert!(stderr.contains("action space"), "{stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}

#[test]
fn unknown_env_lists_the_valid_names() {
    let out = dreamplay(&["env", "run", "--env", "pong"], "");
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("car-racing") && stderr.contains("take-cover"),
        "{stderr}"
    );
}

#[test]
fn inspect_prints_a_bundle_s_header_as_json_and_names_a_bad_file() {
    let path = "models/take-cover/world-model.bin";
    let report = inspect_report(path);
    let size = std::fs::metadata(path).expect("the shipped model").len();
    assert_eq!(report["bytes"].as_u64(), Some(size));
    let header = &report["header"];
    let parts = part_names(header);
    assert_eq!(
        parts,
        [
            "vae",
            "mdrnn",
            "controller",
            "latent_map",
            "extra_controller",
            "extra_controller",
            "extra_controller"
        ],
        "{parts:?}"
    );
    // Every C by number, name and dream: the default, the paper's cold and warm dreams, a hot one.
    let controllers: Vec<(u64, &str, f64, bool)> = report["controllers"]
        .as_array()
        .expect("a controllers list")
        .iter()
        .map(|c| {
            (
                c["index"].as_u64().expect("an index"),
                c["name"].as_str().expect("a name"),
                c["dream"]["tau"].as_f64().expect("a tau"),
                c["dream"]["sampled_done"].as_bool().expect("a done rule"),
            )
        })
        .collect();
    assert_eq!(
        controllers,
        [
            (0, "C, evolved at tau 0.5", 0.5, true),
            (1, "C, evolved at tau 0.1", 0.1, false),
            (2, "C, evolved at tau 1.15", 1.15, false),
            (3, "C, evolved at tau 1.3", 1.3, true),
        ]
    );
    let dream = &header["provenance"]["controller"]["dream"];
    assert_eq!(dream["tau"].as_f64(), Some(0.5), "{dream}");
    assert_eq!(dream["sampled_done"].as_bool(), Some(true), "{dream}");
    // V's latent statistics, one entry per z dim, and the map's point count.
    let stats = &header["latent_stats"];
    assert!(
        stats["frames"].as_u64().is_some_and(|n| n > 1000),
        "{stats}"
    );
    let dims = stats["dims"].as_array().expect("a dims list");
    assert_eq!(dims.len(), 64);
    for d in dims {
        let (p1, p99) = (d["p1"].as_f64().unwrap(), d["p99"].as_f64().unwrap());
        let (mean, sd) = (d["mean"].as_f64().unwrap(), d["sd"].as_f64().unwrap());
        assert!(p1 <= mean && mean <= p99 && sd > 0.0, "{d}");
    }
    assert_eq!(report["latent_map"]["points"].as_u64(), Some(3000));

    let scratch = tempfile::tempdir().expect("scratch folder");
    let bad = scratch.path().join("world-model.bin");
    std::fs::write(&bad, b"not a bundle").expect("write");
    let out = dreamplay(&["inspect", bad.to_str().expect("a UTF-8 path")], "");
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(stderr.contains(&bad.display().to_string()), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn inspect_reads_a_flow_model_s_header_and_names_a_truncated_one() {
    let path = "models/take-cover/flow-model.bin";
    let report = inspect_report(path);
    let header = &report["header"];
    let parts = part_names(header);
    assert_eq!(parts, ["autoencoder", "dynamics", "end_heads"], "{parts:?}");
    assert_eq!(header["spec"]["latent_side"].as_u64(), Some(16), "{header}");
    assert!(header["provenance"]["dynamics"]["epochs"].as_u64() > Some(0));

    // Its first 100 bytes: the magic is right, the rest is missing.
    let scratch = tempfile::tempdir().expect("scratch folder");
    let cut = scratch.path().join("flow-model.bin");
    let bytes = std::fs::read(path).expect("the shipped flow model");
    std::fs::write(&cut, &bytes[..100]).expect("write");
    let out = dreamplay(&["inspect", cut.to_str().expect("a UTF-8 path")], "");
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(stderr.contains(&cut.display().to_string()), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// The fidelity measurements refuse bad settings with a message naming the flag, before any
/// model is read.
#[test]
fn fidelity_flags_out_of_range_are_named() {
    for (args, flag) in [
        (&["--futures", "0", "--horizon", "10"][..], "--futures"),
        (&["--futures", "65", "--horizon", "10"], "--futures"),
        (&["--futures", "8", "--horizon", "0"], "--horizon"),
        (&["--futures", "8", "--horizon", "999999"], "--horizon"),
        (
            &["--futures", "8", "--horizon", "10", "--dream-tau", "0"],
            "--dream-tau",
        ),
        (
            &["--futures", "8", "--horizon", "10", "--dream-tau=-1"],
            "--dream-tau",
        ),
        (
            &["--futures", "8", "--horizon", "10", "--dream-tau", "NaN"],
            "--dream-tau",
        ),
        (&["--open-loop", "--dream-tau", "0"], "--dream-tau"),
        (&["--open-loop", "--episodes", "0"], "--episodes"),
        (&["--open-loop", "--fork-every", "0"], "--fork-every"),
        (
            &["--open-loop", "--futures", "8", "--horizon", "10"],
            "--futures",
        ),
        (&["--open-loop", "--random"], "--random"),
        (
            &["--futures", "8", "--horizon", "10", "--dream-context", "5"],
            "--dream-context",
        ),
        (&["--futures", "8"], "--horizon"),
        (&["--horizon", "10"], "--futures"),
        (&["--fork-every", "5"], "--fork-every"),
    ] {
        let mut all = vec!["eval", "--env", "take-cover"];
        all.extend_from_slice(args);
        let out = dreamplay(&all, "");
        let stderr = text(&out.stderr);
        assert!(!out.status.success(), "{args:?} should fail");
        assert!(stderr.contains(flag), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}

/// A bundle with V but no M: the measurements name the command that trains M.
#[test]
fn fidelity_without_m_names_train_mdrnn() {
    use dreamplay::envs::EnvKind;
    use dreamplay::model::FlexBackend;
    use dreamplay::model::bundle::{self, ModelSpec, Precision, WorldModel};
    let scratch = tempfile::tempdir().expect("scratch folder");
    let path = scratch.path().join("world-model.bin");
    let spec = ModelSpec::paper(EnvKind::TakeCover);
    let mut model = WorldModel::<FlexBackend>::empty(spec);
    model.vae = Some(spec.vae_config().init(&Default::default()));
    bundle::save(&model, &path, Precision::F32).expect("save a V-only bundle");
    let path = path.to_str().expect("a UTF-8 path");
    for mode in [&["--open-loop"][..], &["--futures", "4", "--horizon", "5"]] {
        let mut args = vec!["eval", "--env", "take-cover", "--model", path];
        args.extend_from_slice(mode);
        let out = dreamplay(&args, "");
        let stderr = text(&out.stderr);
        assert!(!out.status.success(), "{mode:?} should fail");
        assert!(
            stderr.contains("dreamplay train-mdrnn --env take-cover"),
            "{stderr}"
        );
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}
