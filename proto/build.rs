//! Compiles `proto/*.proto` without a system `protoc`: protox parses them
//! into a `FileDescriptorSet`, which is written to `OUT_DIR` (for gRPC
//! reflection) and handed to tonic-prost-build to generate messages, clients
//! and servers.

use std::env;
use std::error::Error;
use std::fs;
use std::path::PathBuf;

/// The contract's files, relative to `proto/`.
const PROTOS: &[&str] = &["common.proto", "control.proto", "sync.proto"];

fn main() -> Result<(), Box<dyn Error>> {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?);
    let proto_dir = manifest_dir.join("proto");
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);

    println!("cargo:rerun-if-changed={}", proto_dir.display());
    for file in PROTOS {
        println!("cargo:rerun-if-changed={}", proto_dir.join(file).display());
    }

    let mut compiler = protox::Compiler::new([&proto_dir])
        .map_err(|e| format!("protox: bad include dir {}: {e}", proto_dir.display()))?;
    // Source info carries the comments: into the generated docs, and into
    // the descriptor set so that reflection clients (grpcurl describe) show
    // them.
    compiler.include_source_info(true).include_imports(true);
    compiler
        .open_files(PROTOS)
        .map_err(|e| format!("protox: {e:?}"))?;

    fs::write(
        out_dir.join("lb_descriptor.bin"),
        compiler.encode_file_descriptor_set(),
    )?;

    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .build_transport(true)
        .emit_rerun_if_changed(false)
        .compile_fds(compiler.file_descriptor_set())?;
    Ok(())
}
