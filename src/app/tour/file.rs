//! A tour file: scenes as TOML a lecturer can read and edit. The default tour is
//! `assets/tours/world-models.toml`, built into the binary.
//!
//! Every setting a scene leaves out takes the env's default (the dream C was evolved in, human
//! driving, seed 0, no instrument), so a scene shows the same thing whichever scene came before.
//! Values are checked while the file is read, so an error names the line and the field.

use std::path::Path;

use serde::{Deserialize, Deserializer};

use super::super::commands::{FLOW_STEP_CHOICES, Instrument, Mode};
use super::super::drive::{DONE_ODDS_RANGE, FLOW_TEMPERATURE_RANGE};
use super::super::instruments::FAN_SIZES;
use super::super::lecture::ViewKind;
use super::super::world_model::DreamFamily;
use crate::envs::EnvKind;
use crate::model::mdrnn::DoneRule;

/// The tour `dreamplay tour` plays when given no file.
pub const DEFAULT_TOUR: &str = include_str!("../../../assets/tours/world-models.toml");
/// How the default tour is named in messages.
pub const DEFAULT_TOUR_NAME: &str = "assets/tours/world-models.toml";
/// The most real steps a scene may run before its dream forks: a long prefix would hold the window
/// blank while it runs.
pub const FORK_AFTER_MAX: u32 = 2000;
/// The most lines a caption may have: it must leave the views their room.
pub const CAPTION_LINES_MAX: usize = 4;

/// A tour: a title and its scenes, in order.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TourFile {
    pub title: String,
    #[serde(rename = "scene")]
    pub scenes: Vec<Scene>,
}

/// One scene: where the playground goes, and what the caption tells the hall to look at.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scene {
    pub title: String,
    #[serde(deserialize_with = "caption")]
    pub caption: String,
    pub env: EnvKind,
    #[serde(default)]
    pub mode: Mode,
    #[serde(default)]
    pub driver: SceneDriver,
    /// A C of the bundle by name (`inspect` lists them); none: the bundle's own C.
    #[serde(default)]
    pub controller: Option<String>,
    /// The real episode's seed: the scene's frames follow from it.
    #[serde(default)]
    pub seed: u64,
    #[serde(default, deserialize_with = "tau")]
    pub tau: Option<f32>,
    #[serde(default, deserialize_with = "done_odds")]
    pub done_odds: Option<f32>,
    #[serde(default)]
    pub done_rule: Option<SceneDoneRule>,
    /// Real steps before the dream forks (with the scene's driver acting).
    #[serde(default, deserialize_with = "fork_after")]
    pub fork_after: u32,
    /// Start paused.
    #[serde(default)]
    pub paused: bool,
    /// Start the dream from a random z rather than the real frame.
    #[serde(default)]
    pub random_z: bool,
    #[serde(default)]
    pub instrument: Option<Instrument>,
    #[serde(default, deserialize_with = "futures")]
    pub futures: Option<usize>,
    /// Lockstep: re-sync every K steps, or "off".
    #[serde(default, deserialize_with = "resync")]
    pub resync: Option<Option<u32>>,
    #[serde(default)]
    pub maximise: Option<ViewKind>,
    /// Which world model dreams: "2018" (V and M) or "flow".
    #[serde(default)]
    pub dream_with: Option<DreamFamily>,
    /// The flow dream's sampling steps: 1, 2, 4 or 8.
    #[serde(default, deserialize_with = "flow_steps")]
    pub flow_steps: Option<usize>,
    /// The flow dream's temperature.
    #[serde(default, deserialize_with = "flow_temperature")]
    pub flow_temperature: Option<f32>,
}

/// Who drives when a scene opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SceneDriver {
    #[default]
    Human,
    #[serde(alias = "C")]
    C,
}

/// The dream's done rule, as a tour names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SceneDoneRule {
    #[serde(alias = "sample")]
    Drawn,
    Threshold,
}

impl From<SceneDoneRule> for DoneRule {
    fn from(rule: SceneDoneRule) -> Self {
        match rule {
            SceneDoneRule::Drawn => DoneRule::Sample,
            SceneDoneRule::Threshold => DoneRule::Threshold,
        }
    }
}

impl TourFile {
    /// Reads a tour; every error names `name` (the file), and the line and field where it can.
    pub fn parse(text: &str, name: &str) -> anyhow::Result<Self> {
        let tour: TourFile = toml::from_str(text)
            .map_err(|err| anyhow::anyhow!("tour file {name}: {}", err.to_string().trim_end()))?;
        if tour.scenes.is_empty() {
            anyhow::bail!("tour file {name} has no scenes: add one with [[scene]]");
        }
        Ok(tour)
    }

    /// The tour in `path`, or the default tour.
    pub fn load(path: Option<&Path>) -> anyhow::Result<Self> {
        match path {
            None => Self::parse(DEFAULT_TOUR, DEFAULT_TOUR_NAME),
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|err| {
                    anyhow::anyhow!("cannot read tour file {}: {err}", path.display())
                })?;
                Self::parse(&text, &path.display().to_string())
            }
        }
    }

    /// `N. title` per scene, numbered from 1.
    pub fn listing(&self) -> String {
        self.scenes
            .iter()
            .enumerate()
            .map(|(index, scene)| format!("{}. {}\n", index + 1, scene.title))
            .collect()
    }
}

fn caption<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    let text = String::deserialize(deserializer)?;
    let text = text.trim().to_string();
    let lines = text.lines().count();
    if lines > CAPTION_LINES_MAX {
        return Err(serde::de::Error::custom(format!(
            "caption has {lines} lines; at most {CAPTION_LINES_MAX} fit under the views"
        )));
    }
    Ok(text)
}

fn tau<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<f32>, D::Error> {
    let tau = f32::deserialize(deserializer)?;
    if !(tau.is_finite() && (0.01..=3.0).contains(&tau)) {
        return Err(serde::de::Error::custom(format!(
            "tau must be between 0.01 and 3, found {tau}"
        )));
    }
    Ok(Some(tau))
}

fn done_odds<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<f32>, D::Error> {
    let odds = f32::deserialize(deserializer)?;
    let (low, high) = DONE_ODDS_RANGE;
    if !(odds.is_finite() && (low..=high).contains(&odds)) {
        return Err(serde::de::Error::custom(format!(
            "done_odds must be between {low} and {high}, found {odds}"
        )));
    }
    Ok(Some(odds))
}

fn fork_after<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u32, D::Error> {
    let steps = i64::deserialize(deserializer)?;
    u32::try_from(steps)
        .ok()
        .filter(|steps| *steps <= FORK_AFTER_MAX)
        .ok_or_else(|| {
            serde::de::Error::custom(format!(
                "fork_after must be between 0 and {FORK_AFTER_MAX} real steps, found {steps}"
            ))
        })
}

fn futures<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<usize>, D::Error> {
    let n = i64::deserialize(deserializer)?;
    usize::try_from(n)
        .ok()
        .filter(|n| FAN_SIZES.contains(n))
        .map(Some)
        .ok_or_else(|| {
            serde::de::Error::custom(format!(
                "futures must be between {} and {}, found {n}",
                FAN_SIZES.start(),
                FAN_SIZES.end()
            ))
        })
}

fn flow_steps<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<usize>, D::Error> {
    let steps = i64::deserialize(deserializer)?;
    usize::try_from(steps)
        .ok()
        .filter(|steps| FLOW_STEP_CHOICES.contains(steps))
        .map(Some)
        .ok_or_else(|| {
            serde::de::Error::custom(format!(
                "flow_steps must be one of {FLOW_STEP_CHOICES:?}, found {steps}"
            ))
        })
}

fn flow_temperature<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<f32>, D::Error> {
    let temperature = f32::deserialize(deserializer)?;
    let (low, high) = FLOW_TEMPERATURE_RANGE;
    if !(temperature.is_finite() && (low..=high).contains(&temperature)) {
        return Err(serde::de::Error::custom(format!(
            "flow_temperature must be between {low} and {high}, found {temperature}"
        )));
    }
    Ok(Some(temperature))
}

fn resync<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Option<u32>>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Resync {
        Steps(i64),
        Word(String),
    }
    let bad = |found: String| {
        serde::de::Error::custom(format!(
            "resync must be a number of steps (1 or more) or \"off\", found {found}"
        ))
    };
    match Resync::deserialize(deserializer)? {
        Resync::Word(word) if word.eq_ignore_ascii_case("off") => Ok(Some(None)),
        Resync::Word(word) => Err(bad(format!("\"{word}\""))),
        Resync::Steps(k) => match u32::try_from(k) {
            Ok(k) if k > 0 => Ok(Some(Some(k))),
            _ => Err(bad(k.to_string())),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ONE_SCENE: &str = r#"
title = "t"

[[scene]]
title = "The task"
caption = "Look at the road."
env = "car-racing"
"#;

    #[test]
    fn the_default_tour_reads_and_tells_the_paper_in_order() {
        let tour = TourFile::load(None).expect("the default tour parses");
        assert!(tour.scenes.len() >= 11, "{} scenes", tour.scenes.len());
        let listing = tour.listing();
        assert!(listing.starts_with("1. "), "{listing}");
        assert_eq!(listing.lines().count(), tour.scenes.len());
        for scene in &tour.scenes {
            let lines = scene.caption.lines().count();
            assert!((1..=CAPTION_LINES_MAX).contains(&lines), "{scene:?}");
        }
    }

    #[test]
    fn unnamed_settings_take_their_defaults() {
        let tour = TourFile::parse(ONE_SCENE, "one.toml").unwrap();
        let scene = &tour.scenes[0];
        assert_eq!(scene.mode, Mode::DriveReality);
        assert_eq!(scene.driver, SceneDriver::Human);
        assert_eq!((scene.seed, scene.fork_after, scene.tau), (0, 0, None));
        assert_eq!(scene.instrument, None);
    }

    #[test]
    fn every_setting_reads() {
        let text = format!(
            "{ONE_SCENE}mode = \"lockstep\"\ndriver = \"c\"\ncontroller = \"C, evolved at tau 0.1\"\n\
             seed = 7\ntau = 0.1\ndone_odds = 0.5\ndone_rule = \"threshold\"\nfork_after = 40\n\
             paused = true\nrandom_z = true\ninstrument = \"futures\"\nfutures = 12\nresync = 10\n\
             maximise = \"v\"\ndream_with = \"flow\"\nflow_steps = 4\nflow_temperature = 0.5\n"
        );
        let scene = TourFile::parse(&text, "all.toml").unwrap().scenes.remove(0);
        assert_eq!(scene.mode, Mode::Lockstep);
        assert_eq!(scene.driver, SceneDriver::C);
        assert_eq!(scene.controller.as_deref(), Some("C, evolved at tau 0.1"));
        assert_eq!(
            (scene.seed, scene.tau, scene.done_odds),
            (7, Some(0.1), Some(0.5))
        );
        assert_eq!(scene.done_rule, Some(SceneDoneRule::Threshold));
        assert_eq!(scene.fork_after, 40);
        assert!(scene.paused && scene.random_z);
        assert_eq!(scene.instrument, Some(Instrument::Futures));
        assert_eq!(scene.futures, Some(12));
        assert_eq!(scene.resync, Some(Some(10)));
        assert_eq!(scene.maximise, Some(ViewKind::VSees));
        assert_eq!(scene.dream_with, Some(DreamFamily::Flow));
        assert_eq!(
            (scene.flow_steps, scene.flow_temperature),
            (Some(4), Some(0.5))
        );
        let paper =
            TourFile::parse(&format!("{ONE_SCENE}dream_with = \"2018\"\n"), "m.toml").unwrap();
        assert_eq!(paper.scenes[0].dream_with, Some(DreamFamily::MdnRnn));
        let off = TourFile::parse(&format!("{ONE_SCENE}resync = \"off\"\n"), "off.toml").unwrap();
        assert_eq!(off.scenes[0].resync, Some(None));
    }

    /// The error for `extra` appended to a one-scene file (it lands on line 8).
    fn error_for(extra: &str) -> String {
        let text = format!("{ONE_SCENE}{extra}\n");
        format!("{:#}", TourFile::parse(&text, "mine.toml").unwrap_err())
    }

    #[test]
    fn a_bad_value_names_the_file_the_line_and_the_field() {
        for (extra, field) in [
            ("tau = 9.0", "tau"),
            ("done_odds = 0", "done_odds"),
            ("fork_after = -3", "fork_after"),
            ("futures = 99", "futures"),
            ("resync = 0", "resync"),
            ("resync = \"never\"", "resync"),
            ("mode = \"drive-the-car\"", "mode"),
            ("instrument = \"telescope\"", "instrument"),
            ("maximise = \"everything\"", "maximise"),
            ("driver = \"robot\"", "driver"),
            ("dream_with = \"diffusion\"", "dream_with"),
            ("flow_steps = 3", "flow_steps"),
            ("flow_temperature = 2.5", "flow_temperature"),
            ("tauu = 0.5", "tauu"),
        ] {
            let error = error_for(extra);
            assert!(error.contains("mine.toml"), "{extra}: {error}");
            assert!(error.contains("line 8"), "{extra}: {error}");
            assert!(error.contains(field), "{extra}: {error}");
        }
    }

    #[test]
    fn a_missing_field_or_an_empty_tour_is_named() {
        let error = format!(
            "{:#}",
            TourFile::parse(
                "title = \"t\"\n[[scene]]\ntitle = \"x\"\nenv = \"take-cover\"\n",
                "m.toml"
            )
            .unwrap_err()
        );
        assert!(
            error.contains("caption") && error.contains("line 2"),
            "{error}"
        );
        let error = format!(
            "{:#}",
            TourFile::parse("title = \"t\"\nscene = []\n", "e.toml").unwrap_err()
        );
        assert!(error.contains("no scenes"), "{error}");
        let error = format!(
            "{:#}",
            TourFile::parse(&format!("{ONE_SCENE}caption2 = 1\n"), "u.toml").unwrap_err()
        );
        assert!(error.contains("caption2"), "{error}");
        let long = "title = \"t\"\n[[scene]]\ntitle = \"x\"\nenv = \"take-cover\"\ncaption = \"\"\"\na\nb\nc\nd\ne\n\"\"\"\n";
        let error = format!("{:#}", TourFile::parse(long, "l.toml").unwrap_err());
        assert!(
            error.contains("caption has 5 lines") && error.contains("line 5"),
            "{error}"
        );
    }

    #[test]
    fn a_missing_file_is_named() {
        let error = TourFile::load(Some(Path::new("/no/such/tour.toml"))).unwrap_err();
        assert!(error.to_string().contains("/no/such/tour.toml"), "{error}");
    }
}
