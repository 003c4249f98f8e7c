//! The `astrolabe` binary: parses the command line and runs it.

/// jemalloc: the graph is millions of small, long-lived allocations; jemalloc's size classes carry
/// no per-allocation header and fragment less than the system allocator (measured in
/// BENCHMARKS.md: about 20% less resident memory and a faster load at 1 M objects).
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> std::process::ExitCode {
    astrolabe::cli::main()
}
