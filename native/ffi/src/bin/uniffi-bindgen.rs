//! `uniffi-bindgen`, at the UniFFI version this crate is built with: makes
//! the Swift and Python bindings from the built library
//! (`generate --library target/…/libpunktfunk_client_ffi.so`).

fn main() {
    uniffi::uniffi_bindgen_main()
}
