//! Link settings of the `reportjob` binary, on glibc Linux (where Rust links with LLD):
//! - packed relative relocations (`-z pack-relative-relocs`, DT_RELR, glibc 2.36 and later;
//!   the image is Debian 12's): the relocation table every process reads at start (every
//!   stage pod) shrinks from about 1.8 MB to a few kilobytes;
//! - the functions a chunk worker executes placed together at the start of the code
//!   (`--symbol-ordering-file linker/worker-symbols.txt`, written by
//!   `scripts/order-worker-symbols.sh`): the kernel maps code 64 KiB around each page a
//!   process touches, so the ~2 MiB a worker runs, spread over the binary, cost it 13 MiB.
//!   Names the binary no longer has are skipped silently (`--no-warn-symbol-ordering`).
//!   Only on x86_64, where rustc links with its LLD by default, and only when the build
//!   names no linker of its own (GNU ld does not know the option);
//!   `REPORTJOB_NO_SYMBOL_ORDERING=1` leaves the order to the linker.

fn main() {
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let env = std::env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=REPORTJOB_NO_SYMBOL_ORDERING");
    println!("cargo:rerun-if-env-changed=RUSTC_LINKER");
    if os != "linux" || env != "gnu" {
        return;
    }
    println!("cargo:rustc-link-arg-bin=reportjob=-Wl,-z,pack-relative-relocs");
    let ordering =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("linker/worker-symbols.txt");
    println!("cargo:rerun-if-changed={}", ordering.display());
    let disabled = std::env::var_os("REPORTJOB_NO_SYMBOL_ORDERING").is_some_and(|v| v != "0");
    let default_linker = std::env::var("CARGO_CFG_TARGET_ARCH").is_ok_and(|a| a == "x86_64")
        && std::env::var_os("RUSTC_LINKER").is_none()
        && !std::env::var("CARGO_ENCODED_RUSTFLAGS").is_ok_and(|f| f.contains("link"));
    if ordering.is_file() && default_linker && !disabled {
        println!(
            "cargo:rustc-link-arg-bin=reportjob=-Wl,--symbol-ordering-file={}",
            ordering.display()
        );
        println!("cargo:rustc-link-arg-bin=reportjob=-Wl,--no-warn-symbol-ordering");
    }
}
