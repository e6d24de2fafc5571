//! Link settings of the `reportjob` binary. On glibc Linux it is linked with packed relative
//! relocations (`-z pack-relative-relocs`, DT_RELR, glibc 2.36 and later; the image is
//! Debian 12's): its relocation table shrinks from about 1.8 MB, read by every process at
//! start (every stage pod), to a few kilobytes.

fn main() {
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let env = std::env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    if os == "linux" && env == "gnu" {
        println!("cargo:rustc-link-arg-bin=reportjob=-Wl,-z,pack-relative-relocs");
    }
    println!("cargo:rerun-if-changed=build.rs");
}
