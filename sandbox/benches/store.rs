//! `cargo bench -p podnet-sandbox`: seeds the 1,000-node / 30,000-pod
//! scenario without moto and prints list timings (see `src/bench.rs`).

fn main() {
    let scenario = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/large.toml");
    let iterations = std::env::var("PODNET_BENCH_ITERATIONS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    match podnet_sandbox::bench::run(&scenario, iterations) {
        Ok(report) => print!("{report}"),
        Err(e) => {
            eprintln!("bench failed: {e}");
            std::process::exit(1);
        }
    }
}
