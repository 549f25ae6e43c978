//! The `podnet` binary; everything lives in the library.

fn main() -> std::process::ExitCode {
    // Crash points (`PODNET_CRASH_AT`) hear the journal from here, so the
    // library never kills a process that merely links it.
    podnet::engine::crash::install();
    podnet::main()
}
