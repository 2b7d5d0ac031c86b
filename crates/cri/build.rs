//! Compiles the upstream CRI `api.proto` (kept in `proto/`) with a pure-Rust protobuf
//! compiler, so building needs neither `protoc` nor the network.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/api.proto");
    let fds = protox::compile(["api.proto"], ["proto"])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(fds)?;
    Ok(())
}
