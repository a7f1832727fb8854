//! Several Cs in one bundle, each with the dream it was evolved in, and the paper's Table 2 over
//! them: the file format, `export --add-controller`, `eval --table` and `eval --controller`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::AtomicBool;

use dreamplay::envs::EnvKind;
use dreamplay::model::backend::{FlexBackend, FlexDevice};
use dreamplay::model::bundle::{
    self, BundleError, EvolvedDream, Expect, ModelSpec, NamedController, Precision, TrainingInfo,
    WorldModel, collect_params,
};
use dreamplay::model::controller::Controller;
use dreamplay::model::mdrnn::DoneRule;
use dreamplay::train::eval::Cancelled;
use dreamplay::train::table::{TABLE_CSV_HEADER, TableConfig, paper_table};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

type B = FlexBackend;

const COLD: EvolvedDream = EvolvedDream {
    tau: 0.1,
    done_odds: 1.0,
    done_rule: DoneRule::Threshold,
    context_steps: 4,
};
const WARM: EvolvedDream = EvolvedDream {
    tau: 1.15,
    done_odds: 0.5,
    done_rule: DoneRule::Sample,
    context_steps: 0,
};
const DEFAULT_DREAM: EvolvedDream = EvolvedDream {
    tau: 0.5,
    done_odds: 0.1,
    done_rule: DoneRule::Sample,
    context_steps: 10,
};

fn dev() -> FlexDevice {
    FlexDevice
}

/// The paper's sizes with a small LSTM, so that a test scores a few episodes in seconds.
fn tiny_spec(env: EnvKind) -> ModelSpec {
    ModelSpec {
        hidden_size: 16,
        ..ModelSpec::paper(env)
    }
}

fn random_controller(spec: &ModelSpec, seed: u64) -> Controller {
    let mut c = spec.controller();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let params: Vec<f32> = (0..c.param_count())
        .map(|_| rng.random_range(-0.5..0.5))
        .collect();
    c.set_params(&params).expect("params of the right length");
    c
}

fn evolved_in(dream: EvolvedDream, generations: u64) -> TrainingInfo {
    TrainingInfo {
        epochs: Some(generations),
        dream: Some(dream),
        notes: Some("cma-es in the dream".into()),
        ..TrainingInfo::default()
    }
}

/// A fresh V and M, a default C evolved in [`DEFAULT_DREAM`], and no extra C.
fn tiny_model(env: EnvKind) -> WorldModel<B> {
    let spec = tiny_spec(env);
    let mut model = WorldModel::<B>::init(spec, &dev());
    model.controller = Some(random_controller(&spec, 1));
    model.provenance.controller = Some(evolved_in(DEFAULT_DREAM, 30));
    model
}

fn extras(spec: &ModelSpec) -> Vec<NamedController> {
    vec![
        NamedController {
            name: "C, evolved at tau 0.1".into(),
            controller: random_controller(spec, 2),
            training: evolved_in(COLD, 20),
        },
        NamedController {
            name: "C, evolved at tau 1.15".into(),
            controller: random_controller(spec, 3),
            training: evolved_in(WARM, 25),
        },
    ]
}

/// A models folder with a take-cover bundle of three Cs (the default and two extras) in f16.
fn models_with_three_cs() -> (tempfile::TempDir, PathBuf) {
    let scratch = tempfile::tempdir().expect("scratch folder");
    let mut model = tiny_model(EnvKind::TakeCover);
    model.extra_controllers = extras(&model.spec);
    let path = bundle::default_path(scratch.path(), EnvKind::TakeCover);
    bundle::save(&model, &path, Precision::F16).expect("save");
    (scratch, path)
}

fn dreamplay(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dreamplay"))
        .args(args)
        .output()
        .expect("the dreamplay binary was built by cargo test")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("a UTF-8 path")
}

#[test]
fn extra_cs_round_trip_with_their_names_dreams_and_weights() {
    let (_scratch, path) = models_with_three_cs();
    let model = tiny_model(EnvKind::TakeCover);
    let expected = extras(&model.spec);
    let loaded = bundle::load::<B>(&path, &Expect::spec(&model.spec), &dev()).expect("load");
    assert_eq!(loaded.extra_controllers, expected);
    assert_eq!(loaded.controller, model.controller);
    let names: Vec<String> = loaded
        .named_controllers()
        .into_iter()
        .map(|c| c.name)
        .collect();
    assert_eq!(
        names,
        [
            "C, evolved at tau 0.5",
            "C, evolved at tau 0.1",
            "C, evolved at tau 1.15"
        ]
    );
    // The header names them too, and C alone loads without a backend, the same.
    let header = bundle::read_header(&path).expect("header");
    assert_eq!(header.controller_names(), names);
    let (_, cs) = bundle::load_controllers(&path, &Expect::env(EnvKind::TakeCover)).expect("Cs");
    assert_eq!(cs, loaded.named_controllers());
    assert_eq!(cs[2].training.dream, Some(WARM));
}

#[test]
fn a_bundle_without_extra_cs_has_the_bytes_it_had_before_they_existed() {
    // The shipped CarRacing bundle holds one C: loaded and saved again, it is the same file, and
    // its header has no trace of extra Cs.
    let path = bundle::default_path(Path::new("models"), EnvKind::CarRacing);
    let bytes = std::fs::read(&path).expect("the shipped car-racing bundle");
    let model = bundle::load::<B>(&path, &Expect::env(EnvKind::CarRacing), &dev()).expect("load");
    assert!(model.extra_controllers.is_empty());
    assert_eq!(bundle::to_bytes(&model, Precision::F16), bytes);
    let header_text = text(&bytes[16..bytes.len().min(200_000)]);
    assert!(!header_text.contains("extra_controller"));
    assert!(!header_text.contains("\"name\""));
}

#[test]
fn adding_a_c_keeps_every_other_part_s_bytes() {
    let scratch = tempfile::tempdir().expect("scratch folder");
    let model = tiny_model(EnvKind::TakeCover);
    let path = scratch.path().join("world-model.bin");
    bundle::save(&model, &path, Precision::F16).expect("save");
    let before = std::fs::read(&path).expect("read");
    let parts_before = bundle::read_header(&path).expect("header").parts;
    let body = |bytes: &[u8]| {
        let header_len = u32::from_le_bytes(bytes[12..16].try_into().unwrap()) as usize;
        bytes[16 + header_len..].to_vec()
    };

    for c in extras(&model.spec) {
        bundle::add_controller(&path, &c, false).expect("add a C");
    }
    let after = std::fs::read(&path).expect("read");
    let parts_after = bundle::read_header(&path).expect("header").parts;
    assert_eq!(parts_after[..parts_before.len()], parts_before[..]);
    assert!(
        body(&after).starts_with(&body(&before)),
        "the old parts' bytes come first, unchanged"
    );
    let loaded = bundle::load::<B>(&path, &Expect::env(EnvKind::TakeCover), &dev()).expect("load");
    assert_eq!(loaded.extra_controllers, extras(&model.spec));
    assert_eq!(loaded.controller, model.controller);
    let rounded: Vec<(Vec<usize>, Vec<f32>)> = collect_params(model.mdrnn.as_ref().unwrap())
        .into_iter()
        .map(|(s, v)| {
            (
                s,
                v.into_iter()
                    .map(|x| half::f16::from_f32(x).to_f32())
                    .collect(),
            )
        })
        .collect();
    assert_eq!(collect_params(loaded.mdrnn.as_ref().unwrap()), rounded);

    // The same name again is refused, unless it replaces the old C; the default C's name is
    // never free.
    let mut again = extras(&model.spec).remove(0);
    again.controller = random_controller(&model.spec, 7);
    let err = bundle::add_controller(&path, &again, false).unwrap_err();
    assert!(
        matches!(&err, BundleError::DuplicateController { name, .. } if name == "C, evolved at tau 0.1"),
        "{err}"
    );
    assert!(err.to_string().contains(path_str(&path)), "{err}");
    bundle::add_controller(&path, &again, true).expect("replace it");
    let (_, cs) = bundle::load_controllers(&path, &Expect::default()).expect("Cs");
    assert_eq!(cs.len(), 3);
    assert_eq!(cs[1].controller, again.controller, "in its old place");
    let mut as_default = again.clone();
    as_default.name = "C, evolved at tau 0.5".into();
    assert!(matches!(
        bundle::add_controller(&path, &as_default, true),
        Err(BundleError::DuplicateController { .. })
    ));

    // A C of another size does not go in.
    let other = ModelSpec {
        hidden_size: 8,
        ..model.spec
    };
    let misfit = NamedController {
        name: "small".into(),
        controller: random_controller(&other, 4),
        training: TrainingInfo::default(),
    };
    let err = bundle::add_controller(&path, &misfit, false).unwrap_err();
    assert!(
        matches!(err, BundleError::Mismatch { .. }) && err.to_string().contains("hidden size"),
        "{err}"
    );
}

#[test]
fn a_corrupt_or_duplicate_extra_c_is_an_error_naming_the_file_and_the_c() {
    let (scratch, path) = models_with_three_cs();
    let header = bundle::read_header(&path).expect("header");
    let entry = header
        .parts
        .iter()
        .find(|p| p.name.as_deref() == Some("C, evolved at tau 1.15"))
        .expect("the warm C's part");
    let mut bytes = std::fs::read(&path).expect("read");
    let header_len = u32::from_le_bytes(bytes[12..16].try_into().unwrap()) as usize;
    let at = 16 + header_len + entry.offset as usize + 5;
    bytes[at] ^= 0x40;
    let corrupt = scratch.path().join("corrupt.bin");
    std::fs::write(&corrupt, &bytes).expect("write");
    let err = bundle::load::<B>(&corrupt, &Expect::default(), &dev()).unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(&err, BundleError::CorruptController { name, .. } if name == "C, evolved at tau 1.15"),
        "{msg}"
    );
    assert!(
        msg.contains("corrupt.bin") && msg.contains("checksum"),
        "{msg}"
    );

    // Cut inside the last C: truncated, naming the file.
    let truncated = scratch.path().join("truncated.bin");
    std::fs::write(&truncated, &bytes[..bytes.len() - 3]).expect("write");
    let err = bundle::load::<B>(&truncated, &Expect::default(), &dev()).unwrap_err();
    assert!(
        matches!(err, BundleError::Truncated { .. }) && err.to_string().contains("truncated.bin"),
        "{err}"
    );

    // Two Cs of one name are refused on saving, and on loading a file that has them.
    let mut model = tiny_model(EnvKind::TakeCover);
    let mut twins = extras(&model.spec);
    twins[1].name = twins[0].name.clone();
    model.extra_controllers = twins;
    let dup = scratch.path().join("duplicate.bin");
    let err = bundle::save(&model, &dup, Precision::F16).unwrap_err();
    assert!(
        matches!(&err, BundleError::DuplicateController { name, .. } if name == "C, evolved at tau 0.1"),
        "{err}"
    );
    assert!(!dup.exists());
    std::fs::write(&dup, bundle::to_bytes(&model, Precision::F16)).expect("write");
    let err = bundle::load::<B>(&dup, &Expect::default(), &dev()).unwrap_err();
    assert!(
        matches!(err, BundleError::DuplicateController { .. })
            && err.to_string().contains("duplicate.bin"),
        "{err}"
    );
    // An empty name is refused too.
    model.extra_controllers.truncate(1);
    model.extra_controllers[0].name = " ".into();
    let err = bundle::save(&model, &dup, Precision::F16).unwrap_err();
    assert!(err.to_string().contains("empty name"), "{err}");
}

#[test]
fn the_table_scores_every_c_in_its_own_dream_deterministically() {
    let (_scratch, path) = models_with_three_cs();
    let config = TableConfig {
        episodes: 3,
        max_steps: 40,
        seed: 4,
        ..TableConfig::new(EnvKind::TakeCover, path.clone())
    };
    let progress = std::sync::Mutex::new(Vec::new());
    let record = |done: usize, total: usize| progress.lock().unwrap().push((done, total));
    let never = AtomicBool::new(false);
    let rows = paper_table::<B>(&config, &dev(), &record, &never).expect("the table");
    let names: Vec<&str> = rows.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "C, evolved at tau 0.5",
            "C, evolved at tau 0.1",
            "C, evolved at tau 1.15"
        ]
    );
    let settings: Vec<EvolvedDream> = rows.iter().map(|r| r.dream_settings).collect();
    assert_eq!(settings, [DEFAULT_DREAM, COLD, WARM]);
    for row in &rows {
        assert!(row.recorded);
        assert_eq!((row.dream.n, row.real.n), (3, 3));
        // Take Cover's dream return is the steps survived, the real context's included.
        let context = f64::from(row.dream_settings.context_steps);
        assert!(row.dream.min > context && row.dream.max <= 40.0, "{row:?}");
        assert!(row.real.min >= 1.0 && row.real.max <= 40.0, "{row:?}");
        assert_eq!(row.ratio(), row.dream.mean / row.real.mean);
    }
    let progress = progress.into_inner().unwrap();
    assert_eq!(progress.first(), Some(&(0, 18)));
    assert_eq!(progress.last(), Some(&(18, 18)));
    assert!(progress.windows(2).all(|w| w[0].0 <= w[1].0));

    let again = paper_table::<B>(&config, &dev(), &|_, _| {}, &never).expect("again");
    assert_eq!(again, rows, "deterministic under the seed");

    // Set, the cancel flag stops the run with `Cancelled`.
    let stop = AtomicBool::new(true);
    let err = paper_table::<B>(&config, &dev(), &|_, _| {}, &stop).unwrap_err();
    assert!(
        err.is::<Cancelled>() || err.root_cause().is::<Cancelled>(),
        "{err:#}"
    );
}

#[test]
fn a_bundle_with_one_c_and_no_recorded_dream_gives_one_row_at_the_env_s_default() {
    let scratch = tempfile::tempdir().expect("scratch folder");
    let mut model = tiny_model(EnvKind::CarRacing);
    model.provenance.controller = None;
    let path = scratch.path().join("world-model.bin");
    bundle::save(&model, &path, Precision::F16).expect("save");
    let config = TableConfig {
        episodes: 2,
        max_steps: 15,
        ..TableConfig::new(EnvKind::CarRacing, path)
    };
    let never = AtomicBool::new(false);
    let rows = paper_table::<B>(&config, &dev(), &|_, _| {}, &never).expect("the table");
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].name, "C");
    assert!(!rows[0].recorded);
    assert_eq!(rows[0].tau(), 1.0);
    assert_eq!(rows[0].real.n, 2);
}

/// The rows `eval --table` prints: the lines whose first three fields are numbers.
fn table_rows(stdout: &str) -> Vec<(f64, f64, f64, String)> {
    stdout
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let number = |i: usize| fields.get(i)?.parse::<f64>().ok();
            let (tau, dream, real) = (number(0)?, number(1)?, number(2)?);
            Some((tau, dream, real, fields.get(6..)?.join(" ")))
        })
        .collect()
}

#[test]
fn eval_table_prints_a_row_per_c_beside_the_paper_and_writes_the_csv() {
    let (scratch, path) = models_with_three_cs();
    let csv = scratch.path().join("table.csv");
    let args = [
        "eval",
        "--env",
        "take-cover",
        "--model",
        path_str(&path),
        "--table",
        "--episodes",
        "2",
        "--max-steps",
        "30",
        "--seed",
        "3",
        "--backend",
        "flex",
        "--csv",
        path_str(&csv),
    ];
    let out = dreamplay(&args);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}\n{stdout}", text(&out.stderr));
    let rows = table_rows(&stdout);
    let names: Vec<&str> = rows.iter().map(|r| r.3.as_str()).collect();
    assert_eq!(
        names,
        [
            "C, evolved at tau 0.5",
            "C, evolved at tau 0.1",
            "C, evolved at tau 1.15"
        ],
        "{stdout}"
    );
    let taus: Vec<f64> = rows.iter().map(|r| r.0).collect();
    assert_eq!(taus, [0.5, 0.1, 1.15]);
    assert!(
        stdout.contains("paper  tau 0.10: dream 2086 +- 140, real  193 +-  58"),
        "{stdout}"
    );
    let again = dreamplay(&args);
    assert_eq!(text(&again.stdout), stdout, "deterministic under --seed");

    let written = std::fs::read_to_string(&csv).expect("the CSV");
    let lines: Vec<&str> = written.lines().collect();
    assert_eq!(lines[0], TABLE_CSV_HEADER);
    assert_eq!(lines.len(), 4, "{written}");
    assert!(lines[2].starts_with("0.1,"), "{written}");
    assert!(
        lines[2].ends_with(",\"C, evolved at tau 0.1\""),
        "{written}"
    );

    // The cold C's dream row is what `eval --controller` prints for it in that dream.
    let out = dreamplay(&[
        "eval",
        "--env",
        "take-cover",
        "--model",
        path_str(&path),
        "--controller",
        "C, evolved at tau 0.1",
        "--episodes",
        "2",
        "--max-steps",
        "30",
        "--seed",
        "3",
        "--backend",
        "flex",
        "--dream-tau",
        "0.1",
        "--dream-done",
        "threshold",
        "--done-odds",
        "1",
        "--dream-context",
        "4",
    ]);
    let single = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let dream_line = single
        .lines()
        .find(|l| l.starts_with("dream at tau 0.1"))
        .expect("a dream line");
    assert!(
        dream_line.contains(&format!(": {:.1} +- ", rows[1].1)),
        "{dream_line} against the table's {}",
        rows[1].1
    );

    // A C that is not there is named with the ones that are.
    let out = dreamplay(&[
        "eval",
        "--env",
        "take-cover",
        "--model",
        path_str(&path),
        "--controller",
        "7",
        "--episodes",
        "1",
        "--backend",
        "flex",
    ]);
    let stderr = text(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("\"7\"") && stderr.contains("2: \"C, evolved at tau 1.15\""),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn export_add_controller_puts_a_run_s_c_in_the_bundle_and_lists_the_cs_in_the_card() {
    let scratch = tempfile::tempdir().expect("scratch folder");
    let models = scratch.path().join("models");
    let model = tiny_model(EnvKind::TakeCover);
    let target = bundle::default_path(&models, EnvKind::TakeCover);
    bundle::save(&model, &target, Precision::F16).expect("save");
    let card = target.with_file_name("README.md");
    std::fs::write(
        &card,
        "# take-cover\n\nhand-written notes\n\n## Score\n\nfigures\n",
    )
    .expect("a card");
    let before = bundle::read_header(&target).expect("header").parts;

    // A run: the same V and M in f32 (as training keeps them), its own C evolved cold.
    let run = scratch.path().join("runs").join("tc-cold");
    let mut run_model = model.clone();
    run_model.controller = Some(random_controller(&model.spec, 11));
    run_model.provenance.controller = Some(evolved_in(COLD, 30));
    bundle::save(&run_model, &run.join("world-model.bin"), Precision::F32).expect("save the run");

    let args = [
        "export",
        "--env",
        "take-cover",
        "--add-controller",
        path_str(&run),
        "--models",
        path_str(&models),
    ];
    let out = dreamplay(&args);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}\n{stdout}", text(&out.stderr));
    assert!(
        stdout.contains("added \"C, evolved at tau 0.1\""),
        "{stdout}"
    );
    assert!(
        !stdout.contains("differs"),
        "the same V and M, f32 against f16: {stdout}"
    );
    let header = bundle::read_header(&target).expect("header");
    assert_eq!(
        header.parts[..before.len()],
        before[..],
        "V, M and C untouched"
    );
    let (_, cs) = bundle::load_controllers(&target, &Expect::default()).expect("Cs");
    assert_eq!(cs.len(), 2);
    assert_eq!(cs[1].controller, run_model.controller.clone().unwrap());
    assert_eq!(cs[1].training.dream, Some(COLD));
    let written = std::fs::read_to_string(&card).expect("the card");
    assert!(
        written.starts_with("# take-cover\n\nhand-written notes\n"),
        "{written}"
    );
    assert!(
        written.contains("| 1 | C, evolved at tau 0.1 | tau 0.10, done threshold"),
        "{written}"
    );
    assert!(
        written.find("## The Cs") < written.find("## Score"),
        "{written}"
    );

    // Again: the name is taken, said with the file; --replace lets it through, and the card
    // keeps one list.
    let out = dreamplay(&args);
    let stderr = text(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("two Cs named \"C, evolved at tau 0.1\"")
            && stderr.contains("world-model.bin"),
        "{stderr}"
    );
    let mut named = args.to_vec();
    named.extend(["--controller-name", "cold again"]);
    assert!(dreamplay(&named).status.success());
    let mut replace = args.to_vec();
    replace.push("--replace");
    let out = dreamplay(&replace);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let written = std::fs::read_to_string(&card).expect("the card");
    assert_eq!(written.matches("## The Cs").count(), 1, "{written}");
    assert!(written.contains("| 2 | cold again |"), "{written}");

    // A run of other sizes is refused, naming both sizes.
    let other = scratch.path().join("runs").join("other");
    let mut small = tiny_model(EnvKind::TakeCover);
    small.spec.hidden_size = 8;
    small.mdrnn = Some(small.spec.mdrnn_config().init(&dev()));
    small.controller = Some(random_controller(&small.spec, 5));
    bundle::save(&small, &other.join("world-model.bin"), Precision::F32).expect("save");
    let out = dreamplay(&[
        "export",
        "--env",
        "take-cover",
        "--add-controller",
        path_str(&other),
        "--models",
        path_str(&models),
    ]);
    let stderr = text(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("does not fit")
            && stderr.contains("hidden 8")
            && stderr.contains("hidden 16"),
        "{stderr}"
    );
}
