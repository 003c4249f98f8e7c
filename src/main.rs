//! The `astrolabe` binary: parses the command line and runs it.

fn main() -> std::process::ExitCode {
    astrolabe::cli::main()
}
