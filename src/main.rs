//! The `podnet` binary; everything lives in the library.

fn main() -> std::process::ExitCode {
    podnet::main()
}
