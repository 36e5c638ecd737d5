//! Regenerates `src/fed_learn/pb_generated.rs` from `proto/*.proto` with protox (a pure-Rust
//! protobuf compiler) and prost-build, or with `--check` fails if the committed file differs
//! from what they generate now.
//!
//! Run from the repository root:
//! `cargo run --manifest-path tools/protogen/Cargo.toml [-- --check]`.

use std::path::Path;
use std::process::ExitCode;

const PROTOS: [&str; 2] = ["proto/federated.proto", "proto/admin.proto"];
const TARGET: &str = "src/fed_learn/pb_generated.rs";

fn generate(out_dir: &Path) -> Result<String, Box<dyn std::error::Error>> {
    let descriptors = protox::compile(PROTOS, ["proto"])?;
    prost_build::Config::new()
        .out_dir(out_dir)
        // `bytes::Bytes` makes decoding a byte field a reference-counted slice, not a copy:
        // the model bytes of a message are shared, never duplicated per client.
        .bytes(["."])
        // BTreeMap keeps `ModelData.params` in name order, so encoding is deterministic.
        .btree_map(["."])
        .compile_fds(descriptors)?;
    Ok(std::fs::read_to_string(out_dir.join("fedlearn.rs"))?)
}

fn main() -> ExitCode {
    let check = std::env::args().any(|a| a == "--check");
    let out_dir = std::env::temp_dir().join(format!("fedsim-protogen-{}", std::process::id()));
    let result = std::fs::create_dir_all(&out_dir)
        .map_err(Into::into)
        .and_then(|()| generate(&out_dir));
    let _ = std::fs::remove_dir_all(&out_dir);
    let generated = match result {
        Ok(g) => g,
        Err(e) => {
            eprintln!("error: generating from {PROTOS:?}: {e}");
            return ExitCode::from(2);
        }
    };
    if check {
        let committed = std::fs::read_to_string(TARGET).unwrap_or_default();
        if committed != generated {
            eprintln!("error: {TARGET} is out of date; regenerate it with `cargo run --manifest-path tools/protogen/Cargo.toml`");
            return ExitCode::from(1);
        }
        println!("ok: {TARGET} matches proto/");
        return ExitCode::SUCCESS;
    }
    if let Err(e) = std::fs::write(TARGET, generated) {
        eprintln!("error: writing {TARGET}: {e}");
        return ExitCode::from(2);
    }
    println!("wrote {TARGET}");
    ExitCode::SUCCESS
}
