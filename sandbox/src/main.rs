//! podnet-sandbox: arrives with the sandbox issue.
fn main() {}
