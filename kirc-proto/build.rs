//! Compiles the .proto files with protox (a pure-Rust protobuf compiler), so
//! that building K-IRC never needs a system `protoc`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = [
        "proto/kirc/v1/daemon.proto",
        "proto/kirc/wire/v1/wire.proto",
    ];
    for proto in protos {
        println!("cargo:rerun-if-changed={proto}");
    }
    let file_descriptors = protox::compile(protos, ["proto"])?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_fds(file_descriptors)?;
    Ok(())
}
