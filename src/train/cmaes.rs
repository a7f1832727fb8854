//! CMA-ES with ask/tell, for evolving the controller C, and exact checkpoint/resume.
//!
//! # Build or buy
//! Written here, on `nalgebra` for the linear algebra, because no CMA-ES crate fits:
//! - `cmaes` 0.2.2 (the best-known crate, last release 2022) drives evaluation itself: `run`/`next`
//!   call an `ObjectiveFunction` closure one point at a time (`next_parallel` fans those calls out
//!   on rayon). We evaluate a whole population as ONE batch, so we need ask/tell. Its state
//!   (paths, covariance, eigensystem, `ChaCha12Rng`) is private and not serialisable, so a run
//!   cannot be resumed exactly. It also pins `rand` 0.8 and `rand_chacha` 0.3 next to our 0.9, and
//!   pulls in `statrs` and, by default, `plotters`.
//! - `haru_cmaes` 2.0 has ask/tell, but it works in `f32` and samples from the global, unseeded
//!   `fastrand`, so runs are not reproducible. Its state has no serde, and it needs a system
//!   LAPACK (`nalgebra-lapack` is a required dependency).
//! - The numerics crates that include a CMA-ES (`scirs2-optimize`, `numra-optim`) expose only a
//!   `minimize(f, ..)` driver.
//!
//! # Algorithm
//! The standard (mu/mu_w, lambda)-CMA-ES of Hansen, "The CMA Evolution Strategy: A Tutorial"
//! (2016), with positive recombination weights only (no active CMA): the default weights, the
//! cumulative step-size adaptation, h_sigma stalling, and the rank-one plus rank-mu covariance
//! update. Symbols keep the tutorial's names (`c_sigma`, `d_sigma`, `c_c`, `c_1`, `c_mu`,
//! `mu_eff`, ...).
//!
//! The eigendecomposition C = B D^2 B^T is lazy, as the tutorial recommends, with the gap of
//! Hansen's own `purecma.py`: every 0.5 / ((c_1 + c_mu) n) generations. That is about every 16
//! generations at n = 1,088 with lambda = 64, and every 70 with lambda = 16. The tutorial's
//! stricter 1 / (10 n (c_1 + c_mu)) would mean every 3 generations. `nalgebra`'s `SymmetricEigen`
//! takes about 2 s at n = 1,088, which would then cost most of a second per generation. `faer`
//! decomposes about 6x faster but takes minutes to compile. The covariance is re-symmetrised
//! after every update.
//!
//! # Departures from the paper's code (estool), and conventions
//! - `tell` MAXIMISES fitness, because returns are maximised.
//! - The L2 weight decay ranks candidate x_k by `fitness_k - weight_decay * mean_i(x_k,i^2)`.
//!   That is estool's penalty (the mean of the squares) with the sign the paper means. estool's
//!   `CMAES.tell` adds the (negative) penalty after negating rewards into losses, so there it
//!   favours large weights. The decay affects only the ranking: `best()` and
//!   [`GenerationSummary`] report the fitness the caller gave.
//! - Stop conditions are reported by [`CmaEs::stop_reasons`], never enforced.
//!
//! # Determinism and checkpoints
//! All randomness comes from one `ChaCha8Rng` seeded from `CmaEsConfig::seed`. Standard normals
//! come from `rand_distr::StandardNormal`. [`CmaEs::save`] writes the whole state, including the
//! generator's stream and word position. A run loaded with [`CmaEs::load`] therefore continues
//! bit for bit like the uninterrupted run. Saving between `ask` and `tell` stores the generator
//! position from before that `ask`, so the resumed `ask` returns the same candidates.
//!
//! File layout (all integers and floats little-endian):
//! `b"DPCMAES\n"`, a `u64` header length, a JSON `CheckpointHeader`, then the payload of `f64`s:
//! `[sigma0, weight_decay, sigma, best fitness or NaN, last fitness range or NaN]`, then the mean,
//! p_sigma, p_c, D (n each), B (n x n, column-major), the lower triangle of C (column by column,
//! n (n + 1) / 2 values), and the best candidate (n, if there is one). A `u64` FNV-1a checksum of
//! everything before it, hashed over 64-bit words, ends the file. Writes go to a `.tmp` file that is
//! then renamed over the target, so a crash never leaves a half-written checkpoint. At n = 1,088
//! a checkpoint is about 14 MB.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use nalgebra::{DMatrix, DVector, SymmetricEigen};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};
use serde::{Deserialize, Serialize};

/// Learning rate of the mean, c_m (the tutorial's default): 1 means the mean moves to the weighted
/// recombination of the selected candidates.
const C_M: f64 = 1.0;
/// alpha_cov in c_1 = alpha_cov / ((n + 1.3)^2 + mu_eff) (the tutorial's default).
const ALPHA_COV: f64 = 2.0;
/// alpha_mu in c_mu (the tutorial's default).
const ALPHA_MU: f64 = 2.0;
/// Lazy eigendecomposition: decompose C once more than this many / ((c_1 + c_mu) n) generations
/// have passed since the last decomposition (`purecma.py`'s `lazy_gap_evals`, in generations).
const LAZY_GAP_FACTOR: f64 = 0.5;
/// Eigenvalues of C below this fraction of the largest are raised to it, so that rounding can
/// never make D^-1 infinite. A real run reports [`StopReason::ConditionNumberHuge`] long before.
const MIN_EIGENVALUE_RATIO: f64 = 1e-20;
/// The QR iterations of the eigendecomposition give up after this many sweeps per dimension, so
/// that a pathological matrix makes `tell` fail instead of hang.
const EIGEN_SWEEPS_PER_DIMENSION: usize = 100;

/// Reported stop: sigma * max(D) below this fraction of sigma0 (cf. `cmaes.m`'s TolX = 1e-11 sigma0).
const TOL_X_RELATIVE: f64 = 1e-11;
/// Reported stop: the condition number of C, (max D / min D)^2, above this (`cmaes.m`'s 1e14).
const TOL_CONDITION: f64 = 1e14;
/// Reported stop: all fitness values of the last generation within this range (`purecma`'s 1e-12).
const TOL_FITNESS_RANGE: f64 = 1e-12;

/// The checkpoint's first bytes.
const CHECKPOINT_MAGIC: &[u8; 8] = b"DPCMAES\n";
/// Bumped whenever the checkpoint layout changes.
const CHECKPOINT_FORMAT_VERSION: u32 = 1;
/// A sane bound on the JSON header, to refuse garbage before allocating for it.
const MAX_HEADER_BYTES: u64 = 1 << 20;
/// The largest population accepted: far beyond any use, small enough to allocate for.
const MAX_POPULATION: usize = 1 << 20;
/// Scalars at the start of the payload: sigma0, weight_decay, sigma, best fitness, fitness range.
const PAYLOAD_SCALARS: usize = 5;

/// What can go wrong. Checkpoint errors name the file.
#[derive(Debug, thiserror::Error)]
pub enum CmaEsError {
    #[error("invalid CMA-ES config: {0}")]
    InvalidConfig(String),
    #[error("the initial mean has {found} entries, but the config says dim = {expected}")]
    InitialMeanLength { expected: usize, found: usize },
    #[error("entry {index} of the initial mean is not finite ({value})")]
    NonFiniteInitialMean { index: usize, value: f64 },
    #[error("tell() needs a population: call ask() first")]
    TellWithoutAsk,
    #[error("tell() got {found} fitness values for a population of {expected}")]
    FitnessCount { expected: usize, found: usize },
    #[error("the fitness of candidate {index} is not finite ({value})")]
    NonFiniteFitness { index: usize, value: f64 },
    #[error("numerical breakdown in generation {generation}: {reason}; the state is unchanged")]
    NumericalBreakdown { generation: u64, reason: String },
    #[error("could not {operation} CMA-ES checkpoint {}: {error}", path.display())]
    Io {
        operation: &'static str,
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("CMA-ES checkpoint {} is unreadable: {reason}", path.display())]
    CorruptCheckpoint { path: PathBuf, reason: String },
    #[error("CMA-ES checkpoint {} is for {found} parameters, expected {expected}", path.display())]
    CheckpointDimension {
        path: PathBuf,
        expected: usize,
        found: usize,
    },
}

/// The user-facing settings. `dim`, `sigma0` and `seed` are required; the rest have defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CmaEsConfig {
    /// Number of parameters searched, n (867 for CarRacing's C, 1,088 for Take Cover's).
    pub dim: usize,
    /// Candidates per generation, lambda. Default 4 + floor(3 ln n), the tutorial's; the
    /// paper used 64.
    pub population: usize,
    /// Initial step size sigma0 (the paper: 0.1).
    pub sigma0: f64,
    /// Seed of the one random generator.
    pub seed: u64,
    /// L2 weight decay on the fitness (the paper: 0.01; default 0): see the module doc.
    pub weight_decay: f64,
}

impl CmaEsConfig {
    pub fn new(dim: usize, sigma0: f64, seed: u64) -> Self {
        Self {
            dim,
            population: Self::default_population(dim),
            sigma0,
            seed,
            weight_decay: 0.0,
        }
    }

    pub fn with_population(mut self, population: usize) -> Self {
        self.population = population;
        self
    }

    pub fn with_weight_decay(mut self, weight_decay: f64) -> Self {
        self.weight_decay = weight_decay;
        self
    }

    /// lambda = 4 + floor(3 ln n), the tutorial's default.
    pub fn default_population(dim: usize) -> usize {
        4 + (3.0 * (dim.max(1) as f64).ln()).floor() as usize
    }

    fn validate(&self) -> Result<(), CmaEsError> {
        let problem = if self.dim == 0 {
            Some("dim must be at least 1".to_string())
        } else if !(2..=MAX_POPULATION).contains(&self.population) {
            Some(format!(
                "population must be in 2..={MAX_POPULATION}, got {}",
                self.population
            ))
        } else if !(self.sigma0.is_finite() && self.sigma0 > 0.0) {
            Some(format!(
                "sigma0 must be finite and positive, got {}",
                self.sigma0
            ))
        } else if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            Some(format!(
                "weight_decay must be finite and >= 0, got {}",
                self.weight_decay
            ))
        } else {
            None
        };
        match problem {
            Some(reason) => Err(CmaEsError::InvalidConfig(reason)),
            None => Ok(()),
        }
    }
}

/// The strategy parameters, all derived from n and lambda (the tutorial's Appendix A, default strategy parameters).
#[derive(Debug, Clone)]
struct StrategyParameters {
    /// lambda: candidates per generation.
    lambda: usize,
    /// mu = floor(lambda / 2): candidates recombined into the new mean.
    mu: usize,
    /// w_1 >= .. >= w_mu > 0, summing to 1 (the default weights, positive only).
    weights: Vec<f64>,
    /// mu_eff = 1 / sum w_i^2: the variance effective selection mass.
    mu_eff: f64,
    /// c_sigma: learning rate of the step-size path p_sigma.
    c_sigma: f64,
    /// d_sigma: damping of the step-size update.
    d_sigma: f64,
    /// c_c: learning rate of the covariance path p_c.
    c_c: f64,
    /// c_1: learning rate of the rank-one update.
    c_1: f64,
    /// c_mu: learning rate of the rank-mu update.
    c_mu: f64,
    /// E||N(0, I)|| ~ sqrt(n) (1 - 1/(4n) + 1/(21 n^2)).
    chi_n: f64,
    /// Generations between eigendecompositions (see [`LAZY_GAP_FACTOR`]).
    eigen_gap_generations: f64,
}

impl StrategyParameters {
    fn new(dim: usize, lambda: usize) -> Self {
        let n = dim as f64;
        let mu = lambda / 2;
        // w'_i = ln((lambda + 1) / 2) - ln i, for i = 1..mu, then normalised to sum 1.
        let raw_weights: Vec<f64> = (1..=mu)
            .map(|i| ((lambda as f64 + 1.0) / 2.0).ln() - (i as f64).ln())
            .collect();
        let raw_sum: f64 = raw_weights.iter().sum();
        let weights: Vec<f64> = raw_weights.iter().map(|w| w / raw_sum).collect();
        let mu_eff = 1.0 / weights.iter().map(|w| w * w).sum::<f64>();

        let c_sigma = (mu_eff + 2.0) / (n + mu_eff + 5.0);
        let d_sigma = 1.0 + 2.0 * (((mu_eff - 1.0) / (n + 1.0)).sqrt() - 1.0).max(0.0) + c_sigma;
        let c_c = (4.0 + mu_eff / n) / (n + 4.0 + 2.0 * mu_eff / n);
        let c_1 = ALPHA_COV / ((n + 1.3).powi(2) + mu_eff);
        let c_mu = (1.0 - c_1).min(
            ALPHA_MU * (mu_eff - 2.0 + 1.0 / mu_eff)
                / ((n + 2.0).powi(2) + ALPHA_MU * mu_eff / 2.0),
        );
        let chi_n = n.sqrt() * (1.0 - 1.0 / (4.0 * n) + 1.0 / (21.0 * n * n));
        let eigen_gap_generations = LAZY_GAP_FACTOR / ((c_1 + c_mu) * n);
        Self {
            lambda,
            mu,
            weights,
            mu_eff,
            c_sigma,
            d_sigma,
            c_c,
            c_1,
            c_mu,
            chi_n,
            eigen_gap_generations,
        }
    }
}

/// A condition worth stopping on. [`CmaEs::stop_reasons`] reports them; nothing enforces them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// sigma times the longest axis of C fell below 1e-11 sigma0: the search has collapsed.
    StepSizeTiny,
    /// The condition number of C exceeds 1e14: the numerics are no longer trustworthy.
    ConditionNumberHuge,
    /// Every candidate of the last generation got the same fitness (within 1e-12): no signal.
    FitnessFlat,
}

/// What one `tell` saw, in the caller's fitness (before weight decay).
#[derive(Debug, Clone, PartialEq)]
pub struct GenerationSummary {
    /// Generations completed, this one included.
    pub generation: u64,
    /// Index (into the `ask` population) of the candidate with the highest fitness.
    pub best_index: usize,
    pub fitness_best: f64,
    pub fitness_mean: f64,
    pub fitness_worst: f64,
    /// The step size for the next generation.
    pub sigma: f64,
}

/// The population handed out by `ask` and not yet told.
#[derive(Debug, Clone)]
struct PendingGeneration {
    /// The generator's word position before sampling, which is what a checkpoint stores.
    rng_word_pos_before_sampling: u128,
    /// y_k = B D z_k, one column per candidate [n, lambda].
    steps: DMatrix<f64>,
    /// x_k = m + sigma y_k, one column per candidate [n, lambda].
    candidates: DMatrix<f64>,
}

/// The CMA-ES state. See the module doc for the algorithm and the conventions.
#[derive(Debug, Clone)]
pub struct CmaEs {
    config: CmaEsConfig,
    params: StrategyParameters,
    /// m: the distribution mean, the current best guess.
    mean: DVector<f64>,
    /// sigma: the overall step size.
    sigma: f64,
    /// p_sigma: the conjugate evolution path, for step-size control.
    path_sigma: DVector<f64>,
    /// p_c: the evolution path, for the rank-one update.
    path_c: DVector<f64>,
    /// C: the covariance matrix, kept exactly symmetric.
    covariance: DMatrix<f64>,
    /// B: eigenvectors of C as columns, from the last eigendecomposition.
    eigenbasis: DMatrix<f64>,
    /// D: square roots of C's eigenvalues (the axis lengths), from the last decomposition.
    axis_lengths: DVector<f64>,
    /// The generation at which B and D were last computed.
    eigen_generation: u64,
    /// Generations completed (tells).
    generation: u64,
    /// Fitness values received, over all generations.
    evaluations: u64,
    /// The candidate with the highest fitness told so far, and that fitness.
    best: Option<(DVector<f64>, f64)>,
    /// max - min of the last generation's fitness.
    last_fitness_range: Option<f64>,
    rng: ChaCha8Rng,
    pending: Option<PendingGeneration>,
}

impl CmaEs {
    /// Starts a search at `initial_mean` with C = I and sigma = sigma0.
    pub fn new(config: CmaEsConfig, initial_mean: &[f64]) -> Result<Self, CmaEsError> {
        config.validate()?;
        if initial_mean.len() != config.dim {
            return Err(CmaEsError::InitialMeanLength {
                expected: config.dim,
                found: initial_mean.len(),
            });
        }
        if let Some((index, &value)) = initial_mean
            .iter()
            .enumerate()
            .find(|(_, v)| !v.is_finite())
        {
            return Err(CmaEsError::NonFiniteInitialMean { index, value });
        }
        let n = config.dim;
        Ok(Self {
            params: StrategyParameters::new(n, config.population),
            mean: DVector::from_column_slice(initial_mean),
            sigma: config.sigma0,
            path_sigma: DVector::zeros(n),
            path_c: DVector::zeros(n),
            covariance: DMatrix::identity(n, n),
            eigenbasis: DMatrix::identity(n, n),
            axis_lengths: DVector::from_element(n, 1.0),
            eigen_generation: 0,
            generation: 0,
            evaluations: 0,
            best: None,
            last_fitness_range: None,
            rng: ChaCha8Rng::seed_from_u64(config.seed),
            pending: None,
            config,
        })
    }

    pub fn config(&self) -> &CmaEsConfig {
        &self.config
    }

    /// n, the number of parameters.
    pub fn dim(&self) -> usize {
        self.config.dim
    }

    /// lambda, the candidates per generation.
    pub fn population(&self) -> usize {
        self.params.lambda
    }

    /// Generations completed (successful `tell`s).
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Fitness values received so far.
    pub fn evaluations(&self) -> u64 {
        self.evaluations
    }

    /// The distribution mean m: the search's current estimate, usually better than `best` under
    /// noisy fitness.
    pub fn mean(&self) -> &[f64] {
        self.mean.as_slice()
    }

    /// The step size sigma.
    pub fn sigma(&self) -> f64 {
        self.sigma
    }

    /// The candidate with the highest fitness told so far, and that fitness (before weight decay).
    pub fn best(&self) -> Option<(&[f64], f64)> {
        self.best
            .as_ref()
            .map(|(candidate, fitness)| (candidate.as_slice(), *fitness))
    }

    /// (max D / min D)^2: the condition number of C at the last eigendecomposition.
    pub fn condition_number(&self) -> f64 {
        (self.axis_lengths.max() / self.axis_lengths.min()).powi(2)
    }

    /// The conditions worth stopping on that hold now. Reported, never enforced.
    pub fn stop_reasons(&self) -> Vec<StopReason> {
        let mut reasons = Vec::new();
        if self.sigma * self.axis_lengths.max() < TOL_X_RELATIVE * self.config.sigma0 {
            reasons.push(StopReason::StepSizeTiny);
        }
        if self.condition_number() > TOL_CONDITION {
            reasons.push(StopReason::ConditionNumberHuge);
        }
        if self
            .last_fitness_range
            .is_some_and(|range| range < TOL_FITNESS_RANGE)
        {
            reasons.push(StopReason::FitnessFlat);
        }
        reasons
    }

    /// Samples the generation's lambda candidates x_k = m + sigma B D z_k, z_k ~ N(0, I).
    ///
    /// Asking again before `tell` returns the same candidates without drawing new ones.
    pub fn ask(&mut self) -> Vec<Vec<f64>> {
        let pending = match self.pending.take() {
            Some(pending) => pending,
            None => self.sample_generation(),
        };
        let candidates = pending
            .candidates
            .column_iter()
            .map(|candidate| candidate.iter().copied().collect())
            .collect();
        self.pending = Some(pending);
        candidates
    }

    fn sample_generation(&mut self) -> PendingGeneration {
        let n = self.config.dim;
        let lambda = self.params.lambda;
        let rng_word_pos_before_sampling = self.rng.get_word_pos();
        // D z_k, drawn candidate by candidate so the order of draws is fixed [n, lambda].
        let mut scaled_normals = DMatrix::<f64>::zeros(n, lambda);
        for mut column in scaled_normals.column_iter_mut() {
            for (entry, axis_length) in column.iter_mut().zip(self.axis_lengths.iter()) {
                let z: f64 = StandardNormal.sample(&mut self.rng);
                *entry = axis_length * z;
            }
        }
        // y_k = B D z_k [n, lambda]
        let mut steps = DMatrix::<f64>::zeros(n, lambda);
        steps.gemm(1.0, &self.eigenbasis, &scaled_normals, 0.0);
        // x_k = m + sigma y_k [n, lambda]
        let mut candidates = &steps * self.sigma;
        for mut column in candidates.column_iter_mut() {
            column += &self.mean;
        }
        PendingGeneration {
            rng_word_pos_before_sampling,
            steps,
            candidates,
        }
    }

    /// Ranks the candidates of the last `ask` by `fitness` (HIGHER IS BETTER; `fitness[k]`
    /// belongs to candidate k) and updates the distribution.
    ///
    /// Errors (too few or too many values, a non-finite value, no pending `ask`, a numerical
    /// breakdown) leave the state as it was, so the caller can fix the input and tell again.
    pub fn tell(&mut self, fitness: &[f64]) -> Result<GenerationSummary, CmaEsError> {
        let Some(pending) = &self.pending else {
            return Err(CmaEsError::TellWithoutAsk);
        };
        let params = &self.params;
        let lambda = params.lambda;
        if fitness.len() != lambda {
            return Err(CmaEsError::FitnessCount {
                expected: lambda,
                found: fitness.len(),
            });
        }
        if let Some((index, &value)) = fitness.iter().enumerate().find(|(_, v)| !v.is_finite()) {
            return Err(CmaEsError::NonFiniteFitness { index, value });
        }
        let n = self.config.dim;
        let generations_done = self.generation + 1;
        let breakdown = |reason: &str| CmaEsError::NumericalBreakdown {
            generation: generations_done,
            reason: reason.to_string(),
        };

        // Selection: sort by fitness minus the L2 penalty, best first, ties by index.
        let ranking_fitness: Vec<f64> = pending
            .candidates
            .column_iter()
            .zip(fitness)
            .map(|(candidate, f)| {
                f - self.config.weight_decay * candidate.norm_squared() / n as f64
            })
            .collect();
        if ranking_fitness.iter().any(|f| !f.is_finite()) {
            return Err(breakdown("the weight-decay penalty overflowed"));
        }
        let mut order: Vec<usize> = (0..lambda).collect();
        order.sort_by(|&a, &b| ranking_fitness[b].total_cmp(&ranking_fitness[a]));
        let selected = &order[..params.mu];

        // y_w = sum w_i y_{i:lambda}: the weighted mean step of the mu best.
        let mut step_weighted = DVector::<f64>::zeros(n);
        for (&weight, &k) in params.weights.iter().zip(selected) {
            step_weighted.axpy(weight, &pending.steps.column(k), 1.0);
        }
        // m <- m + c_m sigma y_w
        let mean = &self.mean + &step_weighted * (C_M * self.sigma);

        // p_sigma <- (1 - c_sigma) p_sigma + sqrt(c_sigma (2 - c_sigma) mu_eff) C^-1/2 y_w,
        // with C^-1/2 = B D^-1 B^T.
        let mut whitened = self.eigenbasis.tr_mul(&step_weighted);
        whitened.component_div_assign(&self.axis_lengths);
        let whitened = &self.eigenbasis * whitened;
        let path_sigma = &self.path_sigma * (1.0 - params.c_sigma)
            + whitened * (params.c_sigma * (2.0 - params.c_sigma) * params.mu_eff).sqrt();
        let path_sigma_norm = path_sigma.norm();

        // h_sigma: stall the p_c update while ||p_sigma|| is large, i.e. while sigma grows fast.
        let path_sigma_bias =
            (1.0 - (1.0 - params.c_sigma).powf(2.0 * generations_done as f64)).sqrt();
        let h_sigma =
            path_sigma_norm / path_sigma_bias < (1.4 + 2.0 / (n as f64 + 1.0)) * params.chi_n;

        // p_c <- (1 - c_c) p_c + h_sigma sqrt(c_c (2 - c_c) mu_eff) y_w
        let path_c_gain = if h_sigma {
            (params.c_c * (2.0 - params.c_c) * params.mu_eff).sqrt()
        } else {
            0.0
        };
        let path_c = &self.path_c * (1.0 - params.c_c) + &step_weighted * path_c_gain;

        // C <- (1 + c_1 delta(h_sigma) - c_1 - c_mu sum w_j) C + c_1 p_c p_c^T
        //      + c_mu sum w_i y_i y_i^T, with delta(h_sigma) = (1 - h_sigma) c_c (2 - c_c).
        let delta_h_sigma = if h_sigma {
            0.0
        } else {
            params.c_c * (2.0 - params.c_c)
        };
        let weight_sum: f64 = params.weights.iter().sum();
        let old_covariance_factor =
            1.0 + params.c_1 * delta_h_sigma - params.c_1 - params.c_mu * weight_sum;
        // sqrt(w_i) y_{i:lambda} as columns [n, mu], so that rank-mu = S S^T.
        let mut weighted_selected_steps = DMatrix::<f64>::zeros(n, params.mu);
        for ((mut column, &weight), &k) in weighted_selected_steps
            .column_iter_mut()
            .zip(&params.weights)
            .zip(selected)
        {
            column.axpy(weight.sqrt(), &pending.steps.column(k), 0.0);
        }
        let mut covariance = self.covariance.clone();
        covariance.gemm(
            params.c_mu,
            &weighted_selected_steps,
            &weighted_selected_steps.transpose(),
            old_covariance_factor,
        );
        covariance.ger(params.c_1, &path_c, &path_c, 1.0);
        covariance.fill_upper_triangle_with_lower_triangle();

        // sigma <- sigma exp((c_sigma / d_sigma) (||p_sigma|| / E||N(0, I)|| - 1))
        let sigma = self.sigma
            * ((params.c_sigma / params.d_sigma) * (path_sigma_norm / params.chi_n - 1.0)).exp();

        if !(sigma.is_finite() && sigma > 0.0) {
            return Err(breakdown("sigma left (0, inf)"));
        }
        if mean.iter().chain(covariance.iter()).any(|v| !v.is_finite()) {
            return Err(breakdown("the mean or the covariance is no longer finite"));
        }

        // Lazy eigendecomposition C = B D^2 B^T.
        let decomposition =
            if (generations_done - self.eigen_generation) as f64 > params.eigen_gap_generations {
                match decompose(&covariance) {
                    Some(decomposition) => Some(decomposition),
                    None => return Err(breakdown("the eigendecomposition of C did not converge")),
                }
            } else {
                None
            };

        // The summary, in the caller's fitness.
        let mut best_index = 0;
        for (k, &f) in fitness.iter().enumerate() {
            if f > fitness[best_index] {
                best_index = k;
            }
        }
        let fitness_best = fitness[best_index];
        let fitness_worst = fitness.iter().copied().fold(f64::INFINITY, f64::min);
        let fitness_mean = fitness.iter().sum::<f64>() / lambda as f64;
        let best_improved = self
            .best
            .as_ref()
            .is_none_or(|(_, best)| fitness_best > *best);
        let new_best = best_improved.then(|| {
            (
                DVector::from(pending.candidates.column(best_index)),
                fitness_best,
            )
        });

        // Commit.
        self.mean = mean;
        self.path_sigma = path_sigma;
        self.path_c = path_c;
        self.covariance = covariance;
        self.sigma = sigma;
        if let Some((eigenbasis, axis_lengths)) = decomposition {
            self.eigenbasis = eigenbasis;
            self.axis_lengths = axis_lengths;
            self.eigen_generation = generations_done;
        }
        if let Some(best) = new_best {
            self.best = Some(best);
        }
        self.last_fitness_range = Some(fitness_best - fitness_worst);
        self.generation = generations_done;
        self.evaluations += lambda as u64;
        self.pending = None;

        Ok(GenerationSummary {
            generation: generations_done,
            best_index,
            fitness_best,
            fitness_mean,
            fitness_worst,
            sigma,
        })
    }

    /// Writes the whole state to `path` atomically (a `.tmp` sibling, then a rename).
    pub fn save(&self, path: &Path) -> Result<(), CmaEsError> {
        let n = self.config.dim;
        let io_error = |operation, error| CmaEsError::Io {
            operation,
            path: path.to_path_buf(),
            error,
        };
        let rng_word_pos = match &self.pending {
            Some(pending) => pending.rng_word_pos_before_sampling,
            None => self.rng.get_word_pos(),
        };
        let header = CheckpointHeader {
            format_version: CHECKPOINT_FORMAT_VERSION,
            dim: n,
            population: self.params.lambda,
            seed: self.config.seed,
            generation: self.generation,
            evaluations: self.evaluations,
            eigen_generation: self.eigen_generation,
            rng_stream: self.rng.get_stream(),
            rng_word_pos: rng_word_pos.to_string(),
            has_best: self.best.is_some(),
            sigma: self.sigma,
            best_fitness: self.best.as_ref().map(|(_, fitness)| *fitness),
        };
        let header_json = serde_json::to_vec(&header)
            .map_err(|error| io_error("serialise the header of", std::io::Error::other(error)))?;

        let payload_bytes = payload_len(n, self.best.is_some()).unwrap_or(0);
        let mut file_bytes = FileWriter::with_capacity(
            CHECKPOINT_MAGIC.len() + 8 + header_json.len() + payload_bytes + 8,
        );
        file_bytes.bytes.extend_from_slice(CHECKPOINT_MAGIC);
        file_bytes
            .bytes
            .extend_from_slice(&(header_json.len() as u64).to_le_bytes());
        file_bytes.bytes.extend_from_slice(&header_json);
        file_bytes.push(self.config.sigma0);
        file_bytes.push(self.config.weight_decay);
        file_bytes.push(self.sigma);
        file_bytes.push(self.best.as_ref().map_or(f64::NAN, |(_, fitness)| *fitness));
        file_bytes.push(self.last_fitness_range.unwrap_or(f64::NAN));
        file_bytes.extend(self.mean.iter());
        file_bytes.extend(self.path_sigma.iter());
        file_bytes.extend(self.path_c.iter());
        file_bytes.extend(self.axis_lengths.iter());
        file_bytes.extend(self.eigenbasis.iter());
        for (j, column) in self.covariance.column_iter().enumerate() {
            file_bytes.extend(column.iter().skip(j));
        }
        if let Some((candidate, _)) = &self.best {
            file_bytes.extend(candidate.iter());
        }
        let checksum = fnv1a64_words(&file_bytes.bytes);
        file_bytes.bytes.extend_from_slice(&checksum.to_le_bytes());

        let mut tmp_name = path.as_os_str().to_owned();
        tmp_name.push(".tmp");
        let tmp_path = PathBuf::from(tmp_name);
        let write = || -> std::io::Result<()> {
            let mut file = fs::File::create(&tmp_path)?;
            file.write_all(&file_bytes.bytes)?;
            file.sync_all()
        };
        if let Err(error) = write() {
            let _ = fs::remove_file(&tmp_path);
            return Err(io_error("write", error));
        }
        fs::rename(&tmp_path, path).map_err(|error| io_error("rename into place", error))
    }

    /// Reads a checkpoint written by [`CmaEs::save`], checking it is for `expected_dim`
    /// parameters and intact. The loaded state continues exactly where the saved one stood.
    pub fn load(path: &Path, expected_dim: usize) -> Result<Self, CmaEsError> {
        let corrupt = |reason: String| CmaEsError::CorruptCheckpoint {
            path: path.to_path_buf(),
            reason,
        };
        let bytes = fs::read(path).map_err(|error| CmaEsError::Io {
            operation: "read",
            path: path.to_path_buf(),
            error,
        })?;

        let Some(magic) = bytes.get(..CHECKPOINT_MAGIC.len()) else {
            return Err(corrupt(format!(
                "only {} bytes, too short for a header",
                bytes.len()
            )));
        };
        if magic != CHECKPOINT_MAGIC {
            return Err(corrupt(
                "not a dreamplay CMA-ES checkpoint (wrong magic bytes)".into(),
            ));
        }
        let Some(body_len) = bytes.len().checked_sub(8) else {
            return Err(corrupt("truncated before the checksum".into()));
        };
        let (body, stored_checksum) = bytes.split_at(body_len);
        let mut checksum = [0u8; 8];
        checksum.copy_from_slice(stored_checksum);
        if fnv1a64_words(body) != u64::from_le_bytes(checksum) {
            return Err(corrupt(
                "checksum mismatch: the file is truncated or damaged".into(),
            ));
        }
        let bytes = body;
        let header_len_at = CHECKPOINT_MAGIC.len();
        let header_at = header_len_at + 8;
        let Some(header_len_bytes) = bytes.get(header_len_at..header_at) else {
            return Err(corrupt("truncated before the header length".into()));
        };
        let mut header_len = [0u8; 8];
        header_len.copy_from_slice(header_len_bytes);
        let header_len = u64::from_le_bytes(header_len);
        if header_len > MAX_HEADER_BYTES {
            return Err(corrupt(format!(
                "header length {header_len} is implausible"
            )));
        }
        let payload_at = header_at + header_len as usize;
        let Some(header_json) = bytes.get(header_at..payload_at) else {
            return Err(corrupt("truncated inside the header".into()));
        };
        let header: CheckpointHeader = serde_json::from_slice(header_json)
            .map_err(|error| corrupt(format!("bad header: {error}")))?;
        if header.format_version != CHECKPOINT_FORMAT_VERSION {
            return Err(corrupt(format!(
                "format version {} (this build reads {CHECKPOINT_FORMAT_VERSION})",
                header.format_version
            )));
        }
        if header.dim != expected_dim {
            return Err(CmaEsError::CheckpointDimension {
                path: path.to_path_buf(),
                expected: expected_dim,
                found: header.dim,
            });
        }
        let n = header.dim;
        let Some(expected_payload_len) = payload_len(n, header.has_best) else {
            return Err(corrupt(format!("dim {n} is implausible")));
        };
        let payload = &bytes[payload_at.min(bytes.len())..];
        if payload.len() != expected_payload_len {
            return Err(corrupt(format!(
                "payload is {} bytes, expected {expected_payload_len}",
                payload.len()
            )));
        }
        let rng_word_pos: u128 = header
            .rng_word_pos
            .parse()
            .map_err(|error| corrupt(format!("bad rng_word_pos: {error}")))?;

        let mut reader = PayloadReader {
            bytes: payload,
            offset: 0,
        };
        let sigma0 = reader.scalar();
        let weight_decay = reader.scalar();
        let sigma = reader.scalar();
        let best_fitness = reader.scalar();
        let last_fitness_range = reader.scalar();
        let mean = reader.vector(n);
        let path_sigma = reader.vector(n);
        let path_c = reader.vector(n);
        let axis_lengths = reader.vector(n);
        let eigenbasis = DMatrix::from_column_slice(n, n, reader.vector(n * n).as_slice());
        let mut covariance = DMatrix::<f64>::zeros(n, n);
        for j in 0..n {
            let lower = reader.vector(n - j);
            covariance.view_mut((j, j), (n - j, 1)).copy_from(&lower);
        }
        covariance.fill_upper_triangle_with_lower_triangle();
        let best_candidate = header.has_best.then(|| reader.vector(n));

        let config = CmaEsConfig {
            dim: n,
            population: header.population,
            sigma0,
            seed: header.seed,
            weight_decay,
        };
        config
            .validate()
            .map_err(|error| corrupt(error.to_string()))?;
        let all_finite = mean
            .iter()
            .chain(path_sigma.iter())
            .chain(path_c.iter())
            .chain(eigenbasis.iter())
            .chain(covariance.iter())
            .chain(best_candidate.iter().flat_map(|candidate| candidate.iter()))
            .all(|v| v.is_finite());
        if !all_finite {
            return Err(corrupt("non-finite values in the state".into()));
        }
        if !(sigma.is_finite() && sigma > 0.0) {
            return Err(corrupt(format!("sigma {sigma} is not positive and finite")));
        }
        if !axis_lengths.iter().all(|d| d.is_finite() && *d > 0.0) {
            return Err(corrupt(
                "an axis length of C is not positive and finite".into(),
            ));
        }
        if header.has_best != best_fitness.is_finite()
            || header.eigen_generation > header.generation
        {
            return Err(corrupt("inconsistent header and payload".into()));
        }

        let mut rng = ChaCha8Rng::seed_from_u64(header.seed);
        rng.set_stream(header.rng_stream);
        rng.set_word_pos(rng_word_pos);
        Ok(Self {
            params: StrategyParameters::new(n, config.population),
            config,
            mean,
            sigma,
            path_sigma,
            path_c,
            covariance,
            eigenbasis,
            axis_lengths,
            eigen_generation: header.eigen_generation,
            generation: header.generation,
            evaluations: header.evaluations,
            best: best_candidate.map(|candidate| (candidate, best_fitness)),
            last_fitness_range: last_fitness_range.is_finite().then_some(last_fitness_range),
            rng,
            pending: None,
        })
    }
}

/// B and D of C = B D^2 B^T, or `None` if the decomposition fails.
fn decompose(covariance: &DMatrix<f64>) -> Option<(DMatrix<f64>, DVector<f64>)> {
    let max_sweeps = EIGEN_SWEEPS_PER_DIMENSION * covariance.nrows();
    let eigen = SymmetricEigen::try_new(covariance.clone(), f64::EPSILON, max_sweeps)?;
    let largest = eigen.eigenvalues.max();
    if !(largest.is_finite() && largest > 0.0) {
        return None;
    }
    let floor = largest * MIN_EIGENVALUE_RATIO;
    let axis_lengths = eigen
        .eigenvalues
        .map(|eigenvalue| eigenvalue.max(floor).sqrt());
    Some((eigen.eigenvectors, axis_lengths))
}

/// The JSON header of a checkpoint. Exact floats live in the payload: JSON parsing of floats is
/// not guaranteed to round-trip. `sigma` and `best_fitness` are copies for people reading it.
#[derive(Debug, Serialize, Deserialize)]
struct CheckpointHeader {
    format_version: u32,
    dim: usize,
    population: usize,
    seed: u64,
    generation: u64,
    evaluations: u64,
    eigen_generation: u64,
    rng_stream: u64,
    /// The ChaCha8 word position, a u128 in decimal.
    rng_word_pos: String,
    has_best: bool,
    sigma: f64,
    best_fitness: Option<f64>,
}

/// Bytes in the payload for dimension n, or `None` on overflow.
fn payload_len(n: usize, has_best: bool) -> Option<usize> {
    let square = n.checked_mul(n)?;
    let lower_triangle = n.checked_mul(n.checked_add(1)?)? / 2;
    let vectors = if has_best { 5 } else { 4 };
    let values = PAYLOAD_SCALARS
        .checked_add(n.checked_mul(vectors)?)?
        .checked_add(square)?
        .checked_add(lower_triangle)?;
    values.checked_mul(8)
}

/// FNV-1a over 64-bit little-endian words (a ragged tail is zero-padded): cheap, and catches
/// any damaged word.
fn fnv1a64_words(bytes: &[u8]) -> u64 {
    const FNV_OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
    const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;
    bytes.chunks(8).fold(FNV_OFFSET_BASIS, |hash, chunk| {
        let mut word = [0u8; 8];
        word[..chunk.len()].copy_from_slice(chunk);
        (hash ^ u64::from_le_bytes(word)).wrapping_mul(FNV_PRIME)
    })
}

/// Builds the checkpoint file in memory.
struct FileWriter {
    bytes: Vec<u8>,
}

impl FileWriter {
    fn with_capacity(bytes: usize) -> Self {
        Self {
            bytes: Vec::with_capacity(bytes),
        }
    }

    fn push(&mut self, value: f64) {
        self.bytes.extend_from_slice(&value.to_le_bytes());
    }

    fn extend<'a>(&mut self, values: impl Iterator<Item = &'a f64>) {
        for value in values {
            self.push(*value);
        }
    }
}

/// Reads f64s from a payload whose length was checked beforehand; reads past the end give NaN,
/// which validation then rejects.
struct PayloadReader<'a> {
    bytes: &'a [u8],
    offset: usize,
}

impl PayloadReader<'_> {
    fn scalar(&mut self) -> f64 {
        let value = self
            .bytes
            .get(self.offset..self.offset + 8)
            .and_then(|slice| <[u8; 8]>::try_from(slice).ok())
            .map_or(f64::NAN, f64::from_le_bytes);
        self.offset += 8;
        value
    }

    fn vector(&mut self, len: usize) -> DVector<f64> {
        DVector::from_iterator(len, (0..len).map(|_| self.scalar()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs ask/tell on `objective` (to maximise) until it exceeds `target` or `max_generations`
    /// pass; returns the generations used and the final state.
    fn optimise(
        config: CmaEsConfig,
        initial_mean: &[f64],
        objective: impl Fn(&[f64]) -> f64,
        target: f64,
        max_generations: u64,
    ) -> (u64, CmaEs) {
        let mut es = CmaEs::new(config, initial_mean).expect("valid config");
        while es.generation() < max_generations {
            let candidates = es.ask();
            let fitness: Vec<f64> = candidates.iter().map(|x| objective(x)).collect();
            es.tell(&fitness).expect("finite fitness");
            if objective(es.mean()) > target {
                break;
            }
        }
        (es.generation(), es)
    }

    fn negative_sphere(x: &[f64]) -> f64 {
        -x.iter().map(|v| v * v).sum::<f64>()
    }

    fn negative_rosenbrock(x: &[f64]) -> f64 {
        -x.windows(2)
            .map(|pair| 100.0 * (pair[1] - pair[0] * pair[0]).powi(2) + (1.0 - pair[0]).powi(2))
            .sum::<f64>()
    }

    /// A scratch folder, removed when the guard drops (even when the test fails).
    fn scratch() -> tempfile::TempDir {
        tempfile::tempdir().expect("scratch folder")
    }

    /// Runs `generations` generations on a fixed, cheap, noisy-free objective.
    fn advance(es: &mut CmaEs, generations: u64) -> Vec<Vec<f64>> {
        let mut last = Vec::new();
        for _ in 0..generations {
            last = es.ask();
            let fitness: Vec<f64> = last.iter().map(|x| negative_rosenbrock(x)).collect();
            es.tell(&fitness).expect("finite fitness");
        }
        last
    }

    fn assert_bit_identical(a: &CmaEs, b: &CmaEs) {
        let bits = |values: &[f64]| values.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        assert_eq!(a.generation(), b.generation());
        assert_eq!(a.evaluations(), b.evaluations());
        assert_eq!(a.sigma().to_bits(), b.sigma().to_bits());
        assert_eq!(bits(a.mean()), bits(b.mean()));
        assert_eq!(bits(a.path_sigma.as_slice()), bits(b.path_sigma.as_slice()));
        assert_eq!(bits(a.path_c.as_slice()), bits(b.path_c.as_slice()));
        assert_eq!(bits(a.covariance.as_slice()), bits(b.covariance.as_slice()));
        assert_eq!(bits(a.eigenbasis.as_slice()), bits(b.eigenbasis.as_slice()));
        assert_eq!(
            bits(a.axis_lengths.as_slice()),
            bits(b.axis_lengths.as_slice())
        );
        assert_eq!(a.eigen_generation, b.eigen_generation);
        let best_bits = |es: &CmaEs| es.best().map(|(x, f)| (bits(x), f.to_bits()));
        assert_eq!(best_bits(a), best_bits(b));
        assert_eq!(a.rng.get_word_pos(), b.rng.get_word_pos());
    }

    #[test]
    fn strategy_parameters_match_the_tutorial() {
        // n = 10, lambda = 10: mu = 5 and mu_eff ~ 3.17 (the tutorial's defaults).
        let params = StrategyParameters::new(10, CmaEsConfig::default_population(10));
        assert_eq!(params.lambda, 10);
        assert_eq!(params.mu, 5);
        assert!((params.weights.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        assert!(params.weights.windows(2).all(|pair| pair[0] > pair[1]));
        assert!(
            (params.mu_eff - 3.1672).abs() < 1e-3,
            "mu_eff {}",
            params.mu_eff
        );
        assert!(params.c_1 + params.c_mu <= 1.0);
        // At n = 1,088 with lambda = 64, B and D are refreshed every ~16 generations.
        let big = StrategyParameters::new(1088, 64);
        assert!(
            (10.0..30.0).contains(&big.eigen_gap_generations),
            "{}",
            big.eigen_gap_generations
        );
    }

    #[test]
    fn solves_the_sphere_in_10_dimensions() {
        let config = CmaEsConfig::new(10, 1.0, 7);
        let (generations, es) = optimise(config, &[3.0; 10], negative_sphere, -1e-20, 1_000);
        let distance = negative_sphere(es.mean()).abs().sqrt();
        assert!(
            distance < 1e-10,
            "|m| = {distance} after {generations} generations"
        );
        let (_, best_fitness) = es.best().expect("a best candidate after a run");
        assert!(best_fitness > -1e-18, "best {best_fitness}");
    }

    #[test]
    fn solves_rosenbrock_in_8_dimensions() {
        let config = CmaEsConfig::new(8, 0.5, 1);
        let (generations, es) = optimise(config, &[0.0; 8], negative_rosenbrock, -1e-14, 3_000);
        let worst_error = es
            .mean()
            .iter()
            .map(|v| (v - 1.0).abs())
            .fold(0.0, f64::max);
        assert!(
            worst_error < 1e-6,
            "max |m_i - 1| = {worst_error} after {generations} generations"
        );
    }

    #[test]
    fn ask_tell_is_deterministic_under_a_seed() {
        let config = CmaEsConfig::new(6, 0.3, 42).with_population(12);
        let mut first = CmaEs::new(config.clone(), &[0.5; 6]).expect("valid config");
        let mut second = CmaEs::new(config.clone(), &[0.5; 6]).expect("valid config");
        for _ in 0..20 {
            assert_eq!(advance(&mut first, 1), advance(&mut second, 1));
        }
        assert_bit_identical(&first, &second);

        let mut other_seed =
            CmaEs::new(CmaEsConfig { seed: 43, ..config }, &[0.5; 6]).expect("valid");
        assert_ne!(first.ask(), other_seed.ask());
    }

    #[test]
    fn ask_twice_returns_the_same_population() {
        let mut es = CmaEs::new(CmaEsConfig::new(4, 1.0, 3), &[0.0; 4]).expect("valid config");
        let first = es.ask();
        assert_eq!(first.len(), es.population());
        assert!(first.iter().all(|candidate| candidate.len() == 4));
        assert_eq!(first, es.ask());
    }

    #[test]
    fn resume_from_a_checkpoint_is_bit_identical() {
        let scratch = scratch();
        // n = 30 with lambda = 8 refreshes B and D every few generations, so the run crosses
        // decompositions both before and after the checkpoint.
        let config = CmaEsConfig::new(30, 0.2, 11)
            .with_population(8)
            .with_weight_decay(0.01);
        let mut uninterrupted = CmaEs::new(config.clone(), &[0.1; 30]).expect("valid config");
        advance(&mut uninterrupted, 7);
        let path = scratch.path().join("resume.bin");
        uninterrupted.save(&path).expect("save");
        let last_uninterrupted = advance(&mut uninterrupted, 13);

        let mut resumed = CmaEs::load(&path, 30).expect("load");
        assert_eq!(resumed.config(), &config);
        let last_resumed = advance(&mut resumed, 13);
        assert_eq!(last_uninterrupted, last_resumed);
        assert_bit_identical(&uninterrupted, &resumed);
        assert!(
            uninterrupted.eigen_generation > 7,
            "the run should decompose after the save"
        );
    }

    #[test]
    fn a_checkpoint_between_ask_and_tell_resumes_the_same_population() {
        let scratch = scratch();
        let mut es = CmaEs::new(CmaEsConfig::new(5, 0.5, 5), &[1.0; 5]).expect("valid config");
        advance(&mut es, 3);
        let pending = es.ask();
        let path = scratch.path().join("pending.bin");
        es.save(&path).expect("save");
        let mut resumed = CmaEs::load(&path, 5).expect("load");
        assert_eq!(resumed.ask(), pending);
        let fitness: Vec<f64> = pending.iter().map(|x| negative_sphere(x)).collect();
        es.tell(&fitness).expect("tell");
        resumed.tell(&fitness).expect("tell");
        assert_bit_identical(&es, &resumed);
    }

    /// Where `needle` first occurs in `haystack`.
    fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
        haystack
            .windows(needle.len())
            .position(|window| window == needle)
    }

    /// Recomputes the trailing checksum, as a careless tool editing the file would.
    fn reseal(mut bytes: Vec<u8>) -> Vec<u8> {
        let body_len = bytes.len() - 8;
        let checksum = fnv1a64_words(&bytes[..body_len]);
        bytes[body_len..].copy_from_slice(&checksum.to_le_bytes());
        bytes
    }

    /// `bytes` with `replacement` written over the first occurrence of `original`.
    fn patched(bytes: &[u8], original: &str, replacement: &str) -> Vec<u8> {
        assert_eq!(original.len(), replacement.len());
        let at = find(bytes, original.as_bytes()).expect("the original text is in the file");
        let mut patched = bytes.to_vec();
        patched[at..at + replacement.len()].copy_from_slice(replacement.as_bytes());
        patched
    }

    #[test]
    fn bad_checkpoints_are_errors_that_name_the_file() {
        let scratch = scratch();
        let mut es = CmaEs::new(CmaEsConfig::new(6, 0.5, 9), &[0.0; 6]).expect("valid config");
        advance(&mut es, 2);
        let path = scratch.path().join("good.bin");
        es.save(&path).expect("save");
        let good = fs::read(&path).expect("read back");
        let bad_path = scratch.path().join("bad.bin");
        let names_the_file =
            |error: &CmaEsError| error.to_string().contains(&bad_path.display().to_string());

        // Missing file.
        let missing = CmaEs::load(&bad_path, 6).expect_err("missing file");
        assert!(
            matches!(missing, CmaEsError::Io { .. }) && names_the_file(&missing),
            "{missing}"
        );
        // Wrong dimension.
        let wrong_dim = CmaEs::load(&path, 7).expect_err("wrong dim");
        assert!(matches!(
            wrong_dim,
            CmaEsError::CheckpointDimension {
                expected: 7,
                found: 6,
                ..
            }
        ));

        let mut flipped = good.clone();
        let near_the_end = flipped.len() - 11;
        flipped[near_the_end] ^= 0x10;
        let mut wrong_magic = good.clone();
        wrong_magic[0] = b'X';
        let mut huge_header_length = good.clone();
        huge_header_length[8..16].copy_from_slice(&u64::MAX.to_le_bytes());
        let mut padded = good.clone();
        padded.extend_from_slice(&[0; 8]);
        let cases: Vec<(&str, usize, Vec<u8>)> = vec![
            ("empty", 6, Vec::new()),
            ("wrong magic", 6, wrong_magic),
            ("truncated in the header", 6, good[..20].to_vec()),
            (
                "truncated in the payload",
                6,
                good[..good.len() - 8].to_vec(),
            ),
            ("trailing bytes", 6, padded),
            ("a flipped bit in the payload", 6, flipped),
            (
                "a changed header",
                6,
                patched(&good, "\"generation\":2", "\"generation\":5"),
            ),
            ("garbage", 6, vec![0xAB; 4096]),
            // Damage behind a valid checksum is still caught by validation.
            (
                "a huge header length, resealed",
                6,
                reseal(huge_header_length),
            ),
            (
                "population 1, resealed",
                6,
                reseal(patched(&good, "\"population\":9", "\"population\":1")),
            ),
            (
                "a payload too short for dim, resealed",
                7,
                reseal(patched(&good, "\"dim\":6", "\"dim\":7")),
            ),
        ];
        for (what, expected_dim, bytes) in cases {
            fs::write(&bad_path, &bytes).expect("write scratch file");
            let error = CmaEs::load(&bad_path, expected_dim).expect_err(what);
            assert!(
                matches!(error, CmaEsError::CorruptCheckpoint { .. }),
                "{what}: {error}"
            );
            assert!(names_the_file(&error), "{what}: {error}");
        }
        // The good file still loads.
        assert!(CmaEs::load(&path, 6).is_ok());
    }

    #[test]
    fn bad_tell_input_is_an_error_and_changes_nothing() {
        let mut es = CmaEs::new(CmaEsConfig::new(3, 1.0, 2), &[0.0; 3]).expect("valid config");
        assert!(matches!(
            es.tell(&[0.0; 7]),
            Err(CmaEsError::TellWithoutAsk)
        ));
        let candidates = es.ask();
        let lambda = candidates.len();
        let before = es.clone();
        assert!(matches!(
            es.tell(&vec![0.0; lambda + 1]),
            Err(CmaEsError::FitnessCount { expected, found }) if expected == lambda && found == lambda + 1
        ));
        let mut with_nan = vec![1.0; lambda];
        with_nan[2] = f64::NAN;
        assert!(matches!(
            es.tell(&with_nan),
            Err(CmaEsError::NonFiniteFitness { index: 2, .. })
        ));
        let mut with_infinity = vec![1.0; lambda];
        with_infinity[0] = f64::NEG_INFINITY;
        assert!(matches!(
            es.tell(&with_infinity),
            Err(CmaEsError::NonFiniteFitness { index: 0, .. })
        ));
        assert_bit_identical(&before, &es);
        // The same population can still be told.
        assert_eq!(es.ask(), candidates);
        assert!(es.tell(&vec![1.0; lambda]).is_ok());
        assert_eq!(es.stop_reasons(), vec![StopReason::FitnessFlat]);
    }

    #[test]
    fn bad_configs_and_means_are_errors() {
        let bad_configs = [
            CmaEsConfig::new(0, 0.1, 0),
            CmaEsConfig::new(3, 0.1, 0).with_population(1),
            CmaEsConfig::new(3, 0.1, 0).with_population(usize::MAX),
            CmaEsConfig::new(3, 0.0, 0),
            CmaEsConfig::new(3, f64::NAN, 0),
            CmaEsConfig::new(3, 0.1, 0).with_weight_decay(-1.0),
        ];
        for config in bad_configs {
            let initial_mean = vec![0.0; config.dim];
            assert!(matches!(
                CmaEs::new(config, &initial_mean),
                Err(CmaEsError::InvalidConfig(_))
            ));
        }
        let config = CmaEsConfig::new(3, 0.1, 0);
        assert!(matches!(
            CmaEs::new(config.clone(), &[0.0; 2]),
            Err(CmaEsError::InitialMeanLength {
                expected: 3,
                found: 2
            })
        ));
        assert!(matches!(
            CmaEs::new(config, &[0.0, f64::INFINITY, 0.0]),
            Err(CmaEsError::NonFiniteInitialMean { index: 1, .. })
        ));
    }

    #[test]
    fn weight_decay_pulls_a_flat_landscape_towards_zero() {
        let config = CmaEsConfig::new(5, 0.5, 8).with_weight_decay(0.01);
        let mut es = CmaEs::new(config, &[3.0; 5]).expect("valid config");
        let start_norm = DVector::from_column_slice(es.mean()).norm();
        for _ in 0..60 {
            let lambda = es.ask().len();
            es.tell(&vec![100.0; lambda]).expect("tell");
        }
        let end_norm = DVector::from_column_slice(es.mean()).norm();
        assert!(
            end_norm < 0.5 * start_norm,
            "|m| went from {start_norm} to {end_norm}"
        );
        // best() reports the caller's fitness, not the penalised one.
        assert_eq!(es.best().map(|(_, fitness)| fitness), Some(100.0));
    }

    #[test]
    fn best_tracks_the_highest_fitness_told() {
        let mut es = CmaEs::new(CmaEsConfig::new(2, 1.0, 4), &[0.0; 2]).expect("valid config");
        let candidates = es.ask();
        let fitness: Vec<f64> = (0..candidates.len()).map(|k| k as f64).collect();
        let summary = es.tell(&fitness).expect("tell");
        let top = candidates.len() - 1;
        assert_eq!(summary.best_index, top);
        assert_eq!(es.best(), Some((candidates[top].as_slice(), top as f64)));
        let candidates = es.ask();
        es.tell(&vec![-1.0; candidates.len()]).expect("tell");
        assert_eq!(es.best().map(|(_, fitness)| fitness), Some(top as f64));
    }
}
