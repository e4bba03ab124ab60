//! The baseline is linked as the handlers are (see `crates/lambda-handlers/build.rs`), so that
//! a ratio compares the work each binary does, not how it was linked.

fn main() {
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        println!("cargo:rustc-link-arg-bin=hello-lambda=-no-pie");
    }
}
