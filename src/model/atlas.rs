//! What V's latent space looks like on the data: per-dimension statistics of the encodings (the
//! ranges of the app's latent sliders) and a 2D PCA map with a sample of points.
//!
//! Both are computed by `dreamplay export` from the frames V and M were trained on and travel in
//! the bundle: the statistics in its JSON header, the map as a binary part
//! ([`crate::model::bundle`]). Everything here is deterministic: the same rows and seed give the
//! same values, bit for bit.

use nalgebra::{DMatrix, SymmetricEigen};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// How many points a map keeps by default.
pub const DEFAULT_MAP_POINTS: usize = 3000;

/// One dimension's statistics over the data's frames.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DimStats {
    pub mean: f32,
    /// The population standard deviation (divided by the frame count).
    pub sd: f32,
    /// The 1st and 99th percentiles (linear between order statistics, as numpy's default).
    pub p1: f32,
    pub p99: f32,
}

/// Per-dimension statistics of V's encodings (mu) of the data's frames.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LatentStats {
    pub frames: u64,
    pub dims: Vec<DimStats>,
}

/// One frame of the data on the map.
#[derive(Debug, Clone, PartialEq)]
pub struct MapPoint {
    pub z: Vec<f32>,
    pub xy: [f32; 2],
    /// The frame's index in its episode.
    pub step: u32,
    pub reward: f32,
    pub done: bool,
}

/// A PCA projection of the data's z to 2D, with a sample of points.
#[derive(Debug, Clone, PartialEq)]
pub struct LatentMap {
    /// The data mean, z_size.
    pub center: Vec<f32>,
    /// The two leading unit principal directions.
    pub axes: [Vec<f32>; 2],
    /// The fraction of the total variance along each axis.
    pub variance_explained: [f32; 2],
    /// A sample (default [`DEFAULT_MAP_POINTS`]) of the data's frames.
    pub points: Vec<MapPoint>,
}

/// Why statistics or a map cannot be made, or read back.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AtlasError {
    #[error("no frames to compute latent statistics from")]
    Empty,
    #[error("a z row has {found} values, expected {expected}")]
    RowSize { expected: usize, found: usize },
    #[error("an episode has {z} z rows but {rewards} rewards and {dones} dones")]
    EpisodeSize {
        z: usize,
        rewards: usize,
        dones: usize,
    },
    #[error("a z row holds a non-finite value")]
    NonFinite,
    #[error("a latent map needs z of 2 dimensions or more, found {0}")]
    TooFewDims(usize),
    #[error("a latent map needs at least 1 point")]
    NoPoints,
    #[error("{0}")]
    Layout(String),
}

/// The data's z rows, each with its step in the episode, its reward and its done flag.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LatentRows {
    z_size: usize,
    /// Row-major, `len() * z_size`.
    z: Vec<f32>,
    step: Vec<u32>,
    reward: Vec<f32>,
    done: Vec<bool>,
}

impl LatentRows {
    pub fn new(z_size: usize) -> Self {
        Self {
            z_size,
            ..Self::default()
        }
    }

    pub fn z_size(&self) -> usize {
        self.z_size
    }

    pub fn len(&self) -> usize {
        self.step.len()
    }

    pub fn is_empty(&self) -> bool {
        self.step.is_empty()
    }

    /// Row `i`'s z.
    pub fn z(&self, i: usize) -> &[f32] {
        &self.z[i * self.z_size..(i + 1) * self.z_size]
    }

    /// Adds one row; a row of the wrong size or with a non-finite value is refused.
    pub fn push(
        &mut self,
        z: &[f32],
        step: u32,
        reward: f32,
        done: bool,
    ) -> Result<(), AtlasError> {
        if z.len() != self.z_size {
            return Err(AtlasError::RowSize {
                expected: self.z_size,
                found: z.len(),
            });
        }
        if z.iter().any(|v| !v.is_finite()) {
            return Err(AtlasError::NonFinite);
        }
        self.z.extend_from_slice(z);
        self.step.push(step);
        self.reward.push(reward);
        self.done.push(done);
        Ok(())
    }

    /// Adds one episode: `z` row-major (`rewards.len()` rows), its steps counted from 0.
    pub fn push_episode(
        &mut self,
        z: &[f32],
        rewards: &[f32],
        dones: &[u8],
    ) -> Result<(), AtlasError> {
        let rows = z.len().checked_div(self.z_size).unwrap_or(0);
        if z.len() != rows * self.z_size || rows != rewards.len() || rows != dones.len() {
            return Err(AtlasError::EpisodeSize {
                z: rows,
                rewards: rewards.len(),
                dones: dones.len(),
            });
        }
        for (t, row) in z.chunks_exact(self.z_size.max(1)).enumerate().take(rows) {
            let step = u32::try_from(t).unwrap_or(u32::MAX);
            self.push(row, step, rewards[t], dones[t] != 0)?;
        }
        Ok(())
    }
}

impl LatentStats {
    /// Mean, standard deviation and 1st / 99th percentiles of each dimension over `rows`.
    pub fn compute(rows: &LatentRows) -> Result<Self, AtlasError> {
        if rows.is_empty() || rows.z_size == 0 {
            return Err(AtlasError::Empty);
        }
        let n = rows.len();
        let mut column = vec![0f32; n];
        let dims = (0..rows.z_size)
            .map(|d| {
                for (i, v) in column.iter_mut().enumerate() {
                    *v = rows.z[i * rows.z_size + d];
                }
                let mean = column.iter().map(|&v| v as f64).sum::<f64>() / n as f64;
                let var = column
                    .iter()
                    .map(|&v| (v as f64 - mean).powi(2))
                    .sum::<f64>()
                    / n as f64;
                column.sort_unstable_by(f32::total_cmp);
                DimStats {
                    mean: mean as f32,
                    sd: var.sqrt() as f32,
                    p1: percentile(&column, 0.01),
                    p99: percentile(&column, 0.99),
                }
            })
            .collect();
        Ok(Self {
            frames: n as u64,
            dims,
        })
    }
}

/// The `q` quantile of sorted values, linear between the two order statistics around it.
fn percentile(sorted: &[f32], q: f64) -> f32 {
    let pos = q * (sorted.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = (lo + 1).min(sorted.len() - 1);
    let frac = pos - lo as f64;
    (sorted[lo] as f64 + frac * (sorted[hi] as f64 - sorted[lo] as f64)) as f32
}

impl LatentMap {
    /// The PCA of `rows` (the covariance's two leading eigenvectors, each signed so that its
    /// largest-magnitude component is positive) and `points` rows drawn with `seed`, in data order
    /// (every row where there are no more than `points`).
    pub fn compute(rows: &LatentRows, points: usize, seed: u64) -> Result<Self, AtlasError> {
        let zs = rows.z_size;
        if rows.is_empty() {
            return Err(AtlasError::Empty);
        }
        if zs < 2 {
            return Err(AtlasError::TooFewDims(zs));
        }
        if points == 0 {
            return Err(AtlasError::NoPoints);
        }
        let n = rows.len();
        let mut mean = vec![0f64; zs];
        for i in 0..n {
            for (m, &v) in mean.iter_mut().zip(rows.z(i)) {
                *m += v as f64;
            }
        }
        mean.iter_mut().for_each(|m| *m /= n as f64);
        let mut cov = DMatrix::<f64>::zeros(zs, zs);
        let mut centered = vec![0f64; zs];
        for i in 0..n {
            for ((c, &v), m) in centered.iter_mut().zip(rows.z(i)).zip(&mean) {
                *c = v as f64 - m;
            }
            for a in 0..zs {
                for b in a..zs {
                    cov[(a, b)] += centered[a] * centered[b];
                }
            }
        }
        for a in 0..zs {
            for b in a..zs {
                let v = cov[(a, b)] / n as f64;
                cov[(a, b)] = v;
                cov[(b, a)] = v;
            }
        }
        let total = cov.trace();
        let eigen = SymmetricEigen::new(cov);
        let mut order: Vec<usize> = (0..zs).collect();
        // Largest eigenvalue first; equal ones keep their index order, so the result is fixed.
        order.sort_by(|&a, &b| {
            eigen.eigenvalues[b]
                .total_cmp(&eigen.eigenvalues[a])
                .then(a.cmp(&b))
        });
        let axis = |k: usize| -> (Vec<f32>, f32) {
            if total <= 0.0 {
                // All rows equal: no direction is preferred; the first coordinate axes.
                let mut unit = vec![0f32; zs];
                unit[k] = 1.0;
                return (unit, 0.0);
            }
            let col = eigen.eigenvectors.column(order[k]);
            let norm = col.norm();
            let mut v: Vec<f64> = col.iter().map(|x| x / norm).collect();
            let biggest =
                v.iter().enumerate().fold(
                    0,
                    |best, (i, x)| if x.abs() > v[best].abs() { i } else { best },
                );
            if v[biggest] < 0.0 {
                v.iter_mut().for_each(|x| *x = -*x);
            }
            let explained = (eigen.eigenvalues[order[k]].max(0.0) / total) as f32;
            (v.into_iter().map(|x| x as f32).collect(), explained)
        };
        let ((a0, e0), (a1, e1)) = (axis(0), axis(1));
        let mut map = Self {
            center: mean.iter().map(|&m| m as f32).collect(),
            axes: [a0, a1],
            variance_explained: [e0, e1],
            points: Vec::new(),
        };
        let chosen: Vec<usize> = if n <= points {
            (0..n).collect()
        } else {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let mut picked = rand::seq::index::sample(&mut rng, n, points).into_vec();
            picked.sort_unstable();
            picked
        };
        map.points = chosen
            .into_iter()
            .map(|i| {
                let z = rows.z(i).to_vec();
                MapPoint {
                    xy: map.project(&z),
                    z,
                    step: rows.step[i],
                    reward: rows.reward[i],
                    done: rows.done[i],
                }
            })
            .collect();
        Ok(map)
    }

    /// `z`'s place on the map: `(z - center) · axes`. Extra values beyond z_size are ignored.
    pub fn project(&self, z: &[f32]) -> [f32; 2] {
        let along = |axis: &[f32]| -> f32 {
            z.iter()
                .zip(&self.center)
                .zip(axis)
                .map(|((&v, &c), &a)| (v as f64 - c as f64) * a as f64)
                .sum::<f64>() as f32
        };
        [along(&self.axes[0]), along(&self.axes[1])]
    }

    pub fn z_size(&self) -> usize {
        self.center.len()
    }

    /// The map as the bundle stores it, in this order: center `[Z]`, axes `[2, Z]`,
    /// variance_explained `[2]`, the points' z `[N, Z]`, xy `[N, 2]`, step `[N]`, reward `[N]`
    /// and done `[N]` (0 or 1).
    pub fn to_tensors(&self) -> Vec<(Vec<usize>, Vec<f32>)> {
        let (zs, n) = (self.z_size(), self.points.len());
        let axes = self.axes.concat();
        let per_point = |f: &dyn Fn(&MapPoint) -> Vec<f32>| -> Vec<f32> {
            self.points.iter().flat_map(f).collect()
        };
        vec![
            (vec![zs], self.center.clone()),
            (vec![2, zs], axes),
            (vec![2], self.variance_explained.to_vec()),
            (vec![n, zs], per_point(&|p| p.z.clone())),
            (vec![n, 2], per_point(&|p| p.xy.to_vec())),
            (vec![n], per_point(&|p| vec![p.step as f32])),
            (vec![n], per_point(&|p| vec![p.reward])),
            (
                vec![n],
                per_point(&|p| vec![if p.done { 1.0 } else { 0.0 }]),
            ),
        ]
    }

    /// Reads what [`LatentMap::to_tensors`] wrote, checking every shape against `z_size`.
    pub fn from_tensors(
        tensors: Vec<(Vec<usize>, Vec<f32>)>,
        z_size: usize,
    ) -> Result<Self, AtlasError> {
        let bad = |what: String| AtlasError::Layout(what);
        let [center, axes, explained, z, xy, step, reward, done]: [(Vec<usize>, Vec<f32>); 8] =
            tensors
                .try_into()
                .map_err(|t: Vec<_>| bad(format!("expected 8 tensors, found {}", t.len())))?;
        let n = z.0.first().copied().unwrap_or(0);
        let expected: [(&str, &[usize], Vec<usize>); 8] = [
            ("center", &center.0, vec![z_size]),
            ("axes", &axes.0, vec![2, z_size]),
            ("variance_explained", &explained.0, vec![2]),
            ("z", &z.0, vec![n, z_size]),
            ("xy", &xy.0, vec![n, 2]),
            ("step", &step.0, vec![n]),
            ("reward", &reward.0, vec![n]),
            ("done", &done.0, vec![n]),
        ];
        let values = [
            &center.1,
            &axes.1,
            &explained.1,
            &z.1,
            &xy.1,
            &step.1,
            &reward.1,
            &done.1,
        ];
        for ((name, found, want), values) in expected.into_iter().zip(values) {
            if found != want.as_slice() {
                return Err(bad(format!(
                    "{name}: expected shape {want:?}, found {found:?}"
                )));
            }
            if values.len() != want.iter().product::<usize>() {
                return Err(bad(format!(
                    "{name}: {} values for shape {want:?}",
                    values.len()
                )));
            }
        }
        let mut points = Vec::with_capacity(n);
        for i in 0..n {
            let s = step.1[i];
            if !(s >= 0.0 && s.fract() == 0.0 && s <= u32::MAX as f32) {
                return Err(bad(format!("point {i}: step {s} is not a whole number")));
            }
            let d = done.1[i];
            if d != 0.0 && d != 1.0 {
                return Err(bad(format!("point {i}: done {d} is not 0 or 1")));
            }
            points.push(MapPoint {
                z: z.1[i * z_size..(i + 1) * z_size].to_vec(),
                xy: [xy.1[2 * i], xy.1[2 * i + 1]],
                step: s as u32,
                reward: reward.1[i],
                done: d == 1.0,
            });
        }
        Ok(Self {
            center: center.1,
            axes: [axes.1[..z_size].to_vec(), axes.1[z_size..].to_vec()],
            variance_explained: [explained.1[0], explained.1[1]],
            points,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_interpolate_between_order_statistics() {
        let sorted: Vec<f32> = (0..=100).map(|i| i as f32).collect();
        assert_eq!(percentile(&sorted, 0.01), 1.0);
        assert_eq!(percentile(&sorted, 0.99), 99.0);
        assert_eq!(percentile(&[0.0, 10.0], 0.01), 0.1);
        assert_eq!(percentile(&[3.0], 0.99), 3.0);
    }
}
