fn main() -> std::process::ExitCode {
    shopfloor::cli::main()
}
