//! Records what `edgewire --version` prints besides the version: the git commit the
//! binary was built from and the target it was built for.
//!
//! Builds outside a git checkout (a release tarball, Yocto's fetch of a tag) pass the
//! commit in `EDGEWIRE_GIT_COMMIT`; without either it is "unknown".

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=EDGEWIRE_GIT_COMMIT");
    let commit = std::env::var("EDGEWIRE_GIT_COMMIT")
        .ok()
        .filter(|c| !c.is_empty())
        .or_else(git_commit)
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=EDGEWIRE_GIT_COMMIT={commit}");
    let target = std::env::var("TARGET").unwrap_or_else(|_| "unknown".into());
    println!("cargo:rustc-env=EDGEWIRE_TARGET={target}");
}

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    (out.status.success() && !text.trim().is_empty()).then(|| text.trim().to_string())
}

fn git_commit() -> Option<String> {
    let commit = git(&["rev-parse", "--short=12", "HEAD"])?;
    // Rebuild when HEAD moves: HEAD itself (a checkout) and the branch it points at (a
    // commit). Worktrees keep both outside ./.git, so ask git where they are.
    for path in ["HEAD", "packed-refs"] {
        watch(git(&["rev-parse", "--git-path", path]));
    }
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
        watch(git(&["rev-parse", "--git-path", &branch]));
    }
    Some(commit)
}

/// A missing file would make cargo rerun this script on every build.
fn watch(path: Option<String>) {
    if let Some(p) = path.filter(|p| std::path::Path::new(p).exists()) {
        println!("cargo:rerun-if-changed={p}");
    }
}
