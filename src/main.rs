//! The `dreamplay` binary: parse the command line, run the command, report errors as messages.

use clap::Parser;

fn main() -> std::process::ExitCode {
    keep_large_buffers_in_the_heap();
    quiet_mesa_device_select_without_a_session();
    let cli = dreamplay::cli::Cli::parse();
    match dreamplay::cli::run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// glibc serves every allocation over a dynamic threshold (at most 32 MB) with its own `mmap` and
/// unmaps it on free. A V training step allocates and frees dozens of such buffers (its im2col
/// matrices reach 25 MB); with two threads each unmap also interrupts the other core to flush its
/// TLB, and each fresh page faults in again. Keeping them in the heap, and not trimming it, took V
/// training from about 280 to 380 img/s on the 2-core build machine (`dreamplay bench model`,
/// release build). The cost: the process keeps up to 1 GiB of freed memory for reuse.
fn keep_large_buffers_in_the_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator parameters, before any thread is started.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
    }
}

/// Mesa's implicit Vulkan layer `VK_LAYER_MESA_device_select` looks for a Wayland compositor to
/// order the GPUs, and libwayland prints `error: XDG_RUNTIME_DIR is invalid or not set in the
/// environment.` twice when there is no login session (ssh, CI, a container): lines that read like
/// a failure of ours on every command that probes for a GPU. Without a session there is no
/// compositor to ask, and the backend probe orders the adapters itself (hardware first), so the
/// layer is turned off there with its own switch, `NODEVICE_SELECT`. A user who picks a device
/// with `MESA_VK_DEVICE_SELECT`, or sets `NODEVICE_SELECT` either way, is left alone.
fn quiet_mesa_device_select_without_a_session() {
    #[cfg(target_os = "linux")]
    {
        let unset = |name| std::env::var_os(name).is_none_or(|v| v.is_empty());
        if unset("XDG_RUNTIME_DIR") && unset("NODEVICE_SELECT") && unset("MESA_VK_DEVICE_SELECT") {
            // SAFETY: set before any thread is started, so nothing reads the environment meanwhile.
            unsafe { std::env::set_var("NODEVICE_SELECT", "1") };
        }
    }
}
