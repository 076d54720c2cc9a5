//! Names the commit a binary was built from in `sip-rotate --version`, when
//! it is known: from `SIP_ROTATE_COMMIT` (a package built from a tarball),
//! else from git. Without either, the version alone.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=SIP_ROTATE_COMMIT");
    // A new commit moves the branch HEAD points to. Cargo counts a watched
    // file that does not exist as changed, which would rebuild the crate
    // every time: watch only what is there. A fresh clone may hold the
    // branch only in packed-refs and write a loose ref at its first commit,
    // so the folder of loose refs is watched rather than one file.
    // The folders as git names them: in a worktree `.git` is a file, and
    // its HEAD is in the worktree's own folder, its branches in the common
    // one (watching `.git/HEAD` there named a commit long gone).
    let git_dir = |arg: &str| {
        let out = Command::new("git").args(["rev-parse", arg]).output().ok()?;
        out.status
            .success()
            .then(|| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
    };
    let dirs = [git_dir("--git-dir"), git_dir("--git-common-dir")];
    for dir in dirs.iter().flatten() {
        for watched in ["HEAD", "refs/heads", "packed-refs"] {
            let watched = dir.join(watched);
            if watched.exists() {
                println!("cargo:rerun-if-changed={}", watched.display());
            }
        }
    }
    let commit = std::env::var("SIP_ROTATE_COMMIT")
        .ok()
        .filter(|c| !c.trim().is_empty())
        .or_else(|| {
            let out = Command::new("git")
                .args(["rev-parse", "--short=12", "HEAD"])
                .output()
                .ok()?;
            out.status
                .success()
                .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
                .filter(|c| !c.is_empty())
        });
    let version = env!("CARGO_PKG_VERSION");
    let full = match commit {
        Some(commit) => format!("{version} (commit {commit})"),
        None => version.to_string(),
    };
    println!("cargo:rustc-env=SIP_ROTATE_VERSION={full}");
}
