//! Compiles the admin API and the replication feed in `proto/` into Rust with tonic, using the vendored `protoc`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut config = prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    let out_dir = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    tonic_prost_build::configure()
        .file_descriptor_set_path(out_dir.join("admin_descriptor.bin"))
        .compile_with_config(
            config,
            &[
                "proto/jwtrevoker/admin/v1/admin.proto",
                "proto/jwtrevoker/replication/v1/replication.proto",
            ],
            &["proto"],
        )?;
    Ok(())
}
