/// mimalloc instead of glibc's malloc: with glibc, each of the daemon's threads that allocated
/// (tokio's workers and blocking threads, sled's I/O threads) kept an arena of its own holding
/// ~28 MB it never gave back, so 10,000 × 3 resources took 632 MiB RSS for 236 MB of live heap
/// (BENCHMARKS.md, "2026-12-07: where the memory of 10,000 instances goes").
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    pollerd::cli::main()
}
