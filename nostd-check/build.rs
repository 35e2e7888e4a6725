//! `rustc` links `#![no_std]` binaries with `-nodefaultlibs`; libc provides
//! the C start-up code that calls `main`, and `memcpy` and friends. There is
//! no Rust `std` to link.
fn main() {
    println!("cargo:rustc-link-arg-bins=-lc");
}
