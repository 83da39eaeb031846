//! `cargo bench -p harmony-compiler --bench check [-- --devices N --deployments N --releases N --iterations N]`
//!
//! Generates a repository (default: 10,000 devices, 1,000 deployments, 200 releases over
//! 57 files) in a temporary directory, then measures, each as the median of several runs:
//! - kdl-rs alone parsing every file, one after another (the reference the target is set against);
//! - kdl-rs alone parsing the files in parallel;
//! - `harmony_compiler::compile_repo` (read, parse, lower, check, compile) — what `harmony check` does.
//!   Results are reported in `docs/performance.md`.

use std::time::{Duration, Instant};

use harmony_compiler::{DiskFs, RepoFs, compile_repo};
use rayon::prelude::*;

#[path = "support/repo_gen.rs"]
mod repo_gen;
use repo_gen::{Shape, generate, median};

fn time<T>(iterations: usize, mut f: impl FnMut() -> T) -> Duration {
    median(
        (0..iterations)
            .map(|_| {
                let t = Instant::now();
                std::hint::black_box(f());
                t.elapsed()
            })
            .collect(),
    )
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let shape = Shape::from_args(&args, 7);
    let dir = tempfile::tempdir().expect("temp dir");
    generate(dir.path(), &shape).expect("generate repository");
    let fs = DiskFs::new(dir.path());
    let files = fs.kdl_files().expect("list");
    let texts: Vec<String> = files.iter().map(|f| String::from_utf8(fs.read(f).unwrap()).unwrap()).collect();
    let bytes: usize = texts.iter().map(String::len).sum();

    // Warm up (page cache, allocator) and sanity-check the repository.
    let out = compile_repo(&fs).expect("compile");
    assert_eq!(out.errors(), 0, "benchmark repository has errors: {:?}", out.diagnostics.first());
    let repo = out.repo.expect("compiled");
    let pairs: usize = repo
        .units
        .values()
        .map(|u| match &u.content {
            harmony_compiler::UnitContent::DevicePlan(p) => p.workloads.len(),
            _ => 0,
        })
        .sum();

    let kdl_seq = time(shape.iterations, || texts.iter().map(|t| t.parse::<kdl::KdlDocument>().unwrap().nodes().len()).sum::<usize>());
    let kdl_par = time(shape.iterations, || texts.par_iter().map(|t| t.parse::<kdl::KdlDocument>().unwrap().nodes().len()).sum::<usize>());
    let check = time(shape.iterations, || compile_repo(&fs).unwrap().repo.map(|r| r.units.len()));

    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "repository: {} files, {:.2} MB; {} devices, {} deployments, {} releases",
        files.len(),
        bytes as f64 / 1e6,
        shape.devices,
        shape.deployments,
        shape.releases
    );
    println!("compiled:   {} units, {} device/deployment matches, {} threads", repo.units.len(), pairs, rayon::current_num_threads());
    println!("kdl-rs parse, sequential: {:8.1} ms  ({:.2} MB/s)", ms(kdl_seq), bytes as f64 / 1e6 / kdl_seq.as_secs_f64());
    println!("kdl-rs parse, parallel:   {:8.1} ms", ms(kdl_par));
    println!("harmony check (compile):  {:8.1} ms  = {:.2}x kdl sequential, {:.2}x kdl parallel", ms(check), ms(check) / ms(kdl_seq), ms(check) / ms(kdl_par));
    println!("median of {} runs", shape.iterations);
}
