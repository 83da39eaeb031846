//! Helpers shared by the end-to-end tests (each test file includes this with `mod common;`).
#![allow(dead_code)]

pub mod fleet;
pub mod repo;
pub mod secrets;
pub mod tenants;

use std::path::Path;

/// A finished run of the `harmony` binary.
pub struct Out {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Out {
    /// Asserts the exit code, showing the output when it differs.
    #[track_caller]
    pub fn expect(self, code: i32) -> Self {
        assert_eq!(self.code, code, "exit {}\n--- stdout\n{}\n--- stderr\n{}", self.code, self.stdout, self.stderr);
        self
    }
}

/// Copies a directory tree (the example repository, into a temporary directory).
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}
