//! Links the handlers as position-dependent executables on Linux.
//!
//! A position-independent executable is relocated by the loader at every start: tens of
//! thousands of pointers in the SDK's and axum's tables, written one page at a time. Lambda runs
//! one process per cold start and ASLR of the executable buys nothing there, while skipping the
//! relocation took about 0.35 ms (a fifth) off each handler's measured init
//! (docs/PERFORMANCE.md). The code itself stays position-independent; only the link changes.

fn main() {
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        println!("cargo:rustc-link-arg-bins=-no-pie");
    }
}
