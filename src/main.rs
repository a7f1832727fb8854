//! The `dreamplay` binary: parse the command line, run the command, report errors as messages.

use clap::Parser;

fn main() -> std::process::ExitCode {
    keep_large_buffers_in_the_heap();
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
