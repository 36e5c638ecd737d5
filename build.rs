//! Compiles `proto/*.proto` with protox (a pure-Rust protobuf compiler) and prost-build, so a
//! fresh machine needs nothing but cargo: no system `protoc`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = ["proto/federated.proto", "proto/admin.proto"];
    for p in &protos {
        println!("cargo:rerun-if-changed={p}");
    }
    let descriptors = protox::compile(protos, ["proto"])?;
    prost_build::Config::new()
        // `bytes::Bytes` makes decoding a byte field a reference-counted slice, not a copy:
        // the model bytes of a message are shared, never duplicated per client.
        .bytes(["."])
        // BTreeMap keeps `ModelData.params` in name order, so encoding is deterministic.
        .btree_map(["."])
        .compile_fds(descriptors)?;
    Ok(())
}
