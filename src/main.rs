/// mimalloc: the service allocates and frees many small objects per command, event
/// and request (JSON values, strings, rows); glibc's malloc spent a quarter of our
/// CPU on it in the replay and command profiles (docs/benchmarks.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    shopfloor::cli::main()
}
