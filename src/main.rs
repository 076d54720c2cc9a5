//! The `sip-rotate` binary; everything is in the library's `cli` module.

fn main() -> std::process::ExitCode {
    sip_rotate::cli::main()
}
