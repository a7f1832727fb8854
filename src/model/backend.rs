//! Which burn backend runs the models: burn-wgpu on a real GPU, burn-flex on the CPU.
//!
//! [`select`] probes for a hardware adapter without panicking (burn's
//! `WgpuDevice::DefaultDevice` panics when there is none), treats a software adapter (lavapipe,
//! llvmpipe, SwiftShader) as no GPU, and honours an override from a flag or `DREAMPLAY_BACKEND`.
//! It smoke-tests the chosen wgpu device and falls back to flex, with a note, if that fails.
//! Generic code runs on the choice through [`with_backend!`](crate::with_backend).

use std::fmt;
use std::future::Future;
use std::pin::pin;
use std::str::FromStr;
use std::task::{Context, Poll, Waker};

use burn::prelude::*;

/// The CPU backend.
pub type FlexBackend = burn::backend::Flex;
/// The GPU backend (wgpu with fusion).
pub type WgpuBackend = burn::backend::Wgpu;
pub use burn::backend::flex::FlexDevice;
pub use burn::backend::wgpu::WgpuDevice;

/// The environment variable that overrides the automatic choice: `flex` or `wgpu`.
pub const BACKEND_ENV_VAR: &str = "DREAMPLAY_BACKEND";

/// What the user asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BackendRequest {
    /// wgpu on a hardware GPU if there is one, else flex.
    #[default]
    Auto,
    Flex,
    /// wgpu, even on a software adapter; flex (with a note) if there is no adapter at all.
    Wgpu,
}

impl BackendRequest {
    /// The name [`FromStr`] reads back: auto, flex or wgpu.
    pub fn name(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Flex => "flex",
            Self::Wgpu => "wgpu",
        }
    }
}

impl fmt::Display for BackendRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for BackendRequest {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "" | "auto" => Ok(Self::Auto),
            "flex" | "cpu" => Ok(Self::Flex),
            "wgpu" | "gpu" => Ok(Self::Wgpu),
            other => Err(format!(
                "unknown backend '{other}': expected auto, flex or wgpu"
            )),
        }
    }
}

/// Runs `op` on a worker thread of a rayon pool (as many threads as rayon's global pool) and
/// waits for it; runs it here if no pool can be built.
///
/// Why: flex's tensor ops, `gemm` and gemm_conv's loops are rayon parallel loops. Started from a
/// thread outside the pool, each one is sent to the pool while the caller sleeps until it is done,
/// so every op of a training step costs a wake-up on both sides. From a worker, the caller takes
/// its own share of each loop instead. Training V and M, and its benchmark, run through this.
pub fn on_cpu_workers<R: Send>(op: impl FnOnce() -> R + Send) -> R {
    // Training's autodiff graph and gemm's packing run on this thread: give it main's 8 MiB.
    match rayon::ThreadPoolBuilder::new().stack_size(8 << 20).build() {
        Ok(pool) => pool.install(op),
        Err(_) => op(),
    }
}

/// A wgpu adapter as the probe saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdapterSummary {
    pub name: String,
    pub device_type: String,
    pub api: String,
    pub driver: String,
    pub software: bool,
    /// The burn device that addresses this adapter.
    pub device: WgpuDevice,
}

impl fmt::Display for AdapterSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}, {}", self.name, self.device_type, self.api)?;
        if !self.driver.is_empty() {
            write!(f, ", {}", self.driver)?;
        }
        f.write_str(")")
    }
}

/// The chosen backend and its device.
#[derive(Debug, Clone)]
pub enum SelectedBackend {
    Flex(FlexDevice),
    Wgpu {
        device: WgpuDevice,
        adapter: AdapterSummary,
    },
}

/// The outcome of [`select`]: the backend, and any note the user should see (a fallback, a bad
/// override), to be logged once.
#[derive(Debug, Clone)]
pub struct Selection {
    pub backend: SelectedBackend,
    pub note: Option<String>,
}

impl SelectedBackend {
    /// One line for logs and the UI, e.g. `wgpu on NVIDIA GeForce RTX 3060 (DiscreteGpu, Vulkan)`.
    pub fn describe(&self) -> String {
        match self {
            SelectedBackend::Flex(_) => format!(
                "flex (CPU, {} threads)",
                std::thread::available_parallelism()
                    .map(|n| n.get())
                    .unwrap_or(1)
            ),
            SelectedBackend::Wgpu { adapter, .. } => format!("wgpu on {adapter}"),
        }
    }

    pub fn is_gpu(&self) -> bool {
        matches!(self, SelectedBackend::Wgpu { .. })
    }
}

impl fmt::Display for SelectedBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe())
    }
}

/// Picks the backend: `flag` (e.g. `--backend`) wins over `DREAMPLAY_BACKEND`, which wins over
/// the automatic choice. Never panics: any wgpu trouble falls back to flex with a note.
pub fn select(flag: Option<&str>) -> Selection {
    let mut notes = Vec::new();
    let raw = flag
        .map(str::to_string)
        .or_else(|| std::env::var(BACKEND_ENV_VAR).ok());
    let request = parse_or_auto(raw.as_deref(), &mut notes);
    selection(request, notes)
}

/// [`select`] for a flag clap already parsed; `None` defers to `DREAMPLAY_BACKEND`.
pub fn select_requested(flag: Option<BackendRequest>) -> Selection {
    let mut notes = Vec::new();
    let request = match flag {
        Some(request) => request,
        None => parse_or_auto(std::env::var(BACKEND_ENV_VAR).ok().as_deref(), &mut notes),
    };
    selection(request, notes)
}

/// An unreadable request chooses automatically, with a note saying so.
fn parse_or_auto(raw: Option<&str>, notes: &mut Vec<String>) -> BackendRequest {
    match raw.map(BackendRequest::from_str) {
        None => BackendRequest::Auto,
        Some(Ok(r)) => r,
        Some(Err(e)) => {
            notes.push(format!("{e}; choosing automatically"));
            BackendRequest::Auto
        }
    }
}

fn selection(request: BackendRequest, mut notes: Vec<String>) -> Selection {
    let backend = select_request(request, &mut notes);
    Selection {
        backend,
        note: if notes.is_empty() {
            None
        } else {
            Some(notes.join("; "))
        },
    }
}

/// [`select`] for an already-parsed request; notes go to `notes`.
pub fn select_request(request: BackendRequest, notes: &mut Vec<String>) -> SelectedBackend {
    let flex = || SelectedBackend::Flex(FlexDevice);
    if request == BackendRequest::Flex {
        return flex();
    }
    let adapters = probe_adapters();
    let hardware = adapters.iter().find(|a| !a.software);
    let chosen = match (request, hardware) {
        (_, Some(hw)) => hw.clone(),
        (BackendRequest::Wgpu, None) => match adapters.first() {
            Some(sw) => sw.clone(),
            None => {
                notes.push(
                    "wgpu requested but no wgpu adapter was found; using flex on the CPU".into(),
                );
                return flex();
            }
        },
        (_, None) => {
            if let Some(sw) = adapters.first() {
                notes.push(format!(
                    "only a software GPU adapter ({sw}); flex is faster on the CPU"
                ));
            }
            return flex();
        }
    };
    if let Err(reason) = smoke_test(&chosen.device) {
        notes.push(format!(
            "wgpu on {chosen} failed ({reason}); falling back to flex on the CPU"
        ));
        return flex();
    }
    SelectedBackend::Wgpu {
        device: chosen.device.clone(),
        adapter: chosen,
    }
}

/// Every wgpu adapter of the graphics API burn-wgpu uses here (Metal on macOS, Vulkan
/// elsewhere), hardware first. Empty when wgpu finds none or the probe itself fails.
pub fn probe_adapters() -> Vec<AdapterSummary> {
    let probe = std::panic::catch_unwind(|| {
        let backend = if cfg!(target_os = "macos") {
            wgpu::Backend::Metal
        } else {
            wgpu::Backend::Vulkan
        };
        let instance = wgpu::Instance::new(wgpu::InstanceDescriptor {
            backends: backend.into(),
            ..wgpu::InstanceDescriptor::new_without_display_handle()
        });
        let adapters = block_on(instance.enumerate_adapters(backend.into()));
        let mut per_type = [0usize; 5];
        let mut out: Vec<AdapterSummary> = adapters
            .iter()
            .map(|adapter| {
                let info = adapter.get_info();
                // burn-wgpu numbers adapters within each device type, in enumeration order.
                let slot = match info.device_type {
                    wgpu::DeviceType::DiscreteGpu => 0,
                    wgpu::DeviceType::IntegratedGpu => 1,
                    wgpu::DeviceType::VirtualGpu => 2,
                    wgpu::DeviceType::Cpu => 3,
                    wgpu::DeviceType::Other => 4,
                };
                let index = per_type[slot];
                per_type[slot] += 1;
                let device = match info.device_type {
                    wgpu::DeviceType::DiscreteGpu => WgpuDevice::DiscreteGpu(index),
                    wgpu::DeviceType::IntegratedGpu => WgpuDevice::IntegratedGpu(index),
                    wgpu::DeviceType::VirtualGpu => WgpuDevice::VirtualGpu(index),
                    wgpu::DeviceType::Cpu => WgpuDevice::Cpu,
                    wgpu::DeviceType::Other => WgpuDevice::DefaultDevice,
                };
                AdapterSummary {
                    software: is_software(&info),
                    name: info.name.clone(),
                    device_type: format!("{:?}", info.device_type),
                    api: format!("{:?}", info.backend),
                    driver: info.driver.clone(),
                    device,
                }
            })
            .collect();
        out.sort_by_key(|a| a.software);
        out
    });
    probe.unwrap_or_default()
}

fn is_software(info: &wgpu::AdapterInfo) -> bool {
    const MESA_VENDOR: u32 = 0x10005;
    let name = info.name.to_ascii_lowercase();
    info.device_type == wgpu::DeviceType::Cpu
        || (info.vendor == MESA_VENDOR && name.contains("pipe"))
        || ["llvmpipe", "lavapipe", "softpipe", "swiftshader", "warp"]
            .iter()
            .any(|s| name.contains(s))
}

/// A tiny op with a read-back on `device`, catching panics from device creation.
fn smoke_test(device: &WgpuDevice) -> Result<(), String> {
    let device = device.clone();
    let result = std::panic::catch_unwind(move || {
        let t = Tensor::<WgpuBackend, 1>::from_floats([1.0, 2.0, 3.0], &device);
        (t * 2.0).sum().into_scalar()
    });
    match result {
        Ok(v) if (v - 12.0).abs() < 1e-4 => Ok(()),
        Ok(v) => Err(format!("smoke test computed {v}, expected 12")),
        Err(panic) => Err(panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "panicked".into())),
    }
}

/// Drives a future to completion on this thread (wgpu's native futures are ready at once).
fn block_on<F: Future>(fut: F) -> F::Output {
    let mut fut = pin!(fut);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::yield_now();
    }
}

/// Runs generic code on the selected backend: inside `$body`, `$B` is the backend type and
/// `$device` its device.
///
/// ```ignore
/// let sel = dreamplay::model::backend::select(None);
/// let ms = dreamplay::with_backend!(&sel.backend, |B, device| bench::<B>(&device));
/// ```
#[macro_export]
macro_rules! with_backend {
    ($selected:expr, |$B:ident, $device:ident| $body:expr) => {
        match $selected {
            $crate::model::backend::SelectedBackend::Flex(dev) => {
                type $B = $crate::model::backend::FlexBackend;
                let $device = dev.clone();
                $body
            }
            $crate::model::backend::SelectedBackend::Wgpu { device: dev, .. } => {
                type $B = $crate::model::backend::WgpuBackend;
                let $device = dev.clone();
                $body
            }
        }
    };
}
