fn main() -> std::process::ExitCode {
    pollerd::cli::main()
}
