//! With feature `cuda`: compiles kernels/ with nvcc into a static library holding sm_80 and sm_90a machine
//! code and compute_80 PTX, so no PTX is JIT-compiled at first launch on an A100 or H100 (later GPUs, sm_100
//! and sm_120, JIT-compile the PTX). Without it: nothing.
//!
//! `CANDLE_FA2_ARCHS`: which of the three images to build, a comma-separated subset of `sm_80`, `sm_90a`,
//! `compute_80` (unset or empty: all three). `sm_90a` alone is about 60% of nvcc's time (cicc and ptxas run
//! once per image), for a machine with H100/H200 GPUs only, and what CI compiles. A GPU the build has no
//! image for fails at its first launch with CUDA's "no kernel image is available" error.
//!
//! `CANDLE_FA2_PTX_ONLY=1` (`CANDLE_FA2_ARCHS=compute_80`): compute_80 PTX only, no machine code, what a
//! Blackwell GPU runs (to test that path on an H100/H200, where the driver then JIT-compiles it too). Without
//! sm_90a the wgmma kernels are left out, and the dispatch knows it (kernels/common/device_limits.cuh,
//! SM90A_BUILT): every GPU runs the mma.sync kernels.
//!
//! `CANDLE_FA2_HDIMS` (e.g. `CANDLE_FA2_HDIMS=64,128`), for development builds: compile only the
//! instantiations of those head dims (kernels/generated/*_hdim<d>*.cu) and every file that is not per
//! head_dim, a fraction of nvcc's time. The head-dim dispatch (kernels/generated/dispatch_head_dim.h) then
//! returns cudaErrorNotSupported for the others instead of failing to link (this script defines
//! CANDLE_FA2_HDIMS_FILTER and CANDLE_FA2_HAS_HDIM_<d> for each one compiled), and the Rust side turns that
//! into an error naming the head_dim, before it launches (`candle_fa2_has_head_dim`). Unset or empty: all.
//!
//! scripts/check_toolkit.sh compiles each unit with these flags too (another toolkit, without cargo).

fn main() {
    #[cfg(feature = "cuda")]
    cuda::build();
}

#[cfg(feature = "cuda")]
mod cuda {
    use std::collections::BTreeSet;
    use std::path::{Path, PathBuf};
    use std::process::Command;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;

    pub fn build() {
        println!("cargo:rerun-if-changed=build.rs");
        println!("cargo:rerun-if-changed=kernels");
        // Extra nvcc flags (e.g. a -D switch between tile configurations, to measure two builds side by side).
        println!("cargo:rerun-if-env-changed=CANDLE_FA2_NVCC_FLAGS");
        let extra_flags = std::env::var("CANDLE_FA2_NVCC_FLAGS").unwrap_or_default();
        println!("cargo:rerun-if-env-changed=CANDLE_FA2_HDIMS");
        let hdims_filter = std::env::var("CANDLE_FA2_HDIMS").unwrap_or_default();
        println!("cargo:rerun-if-env-changed=CANDLE_FA2_PTX_ONLY");
        let ptx_only = std::env::var("CANDLE_FA2_PTX_ONLY").is_ok_and(|v| !v.is_empty() && v != "0");
        let mut kernels = Vec::new();
        let mut headers = Vec::new();
        walk(Path::new("kernels"), &mut kernels, &mut headers);
        let hdims = head_dim_filter(&hdims_filter, &kernels);
        if let Some(dims) = &hdims {
            kernels.retain(|k| head_dim_of(k).is_none_or(|d| dims.contains(&d)));
        }
        kernels.sort();
        headers.sort();
        let manifest_dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");

        // The device code: machine code for A100 (sm_80) and H100/H200 (sm_90a: sm_90 plus wgmma, which the
        // Hopper kernels need; a plain sm_90 image beside it would leave the choice between the two to the
        // loader, so there is none), and compute_80 PTX, which later GPUs compile at load time.
        println!("cargo:rerun-if-env-changed=CANDLE_FA2_ARCHS");
        let archs = device_images(&std::env::var("CANDLE_FA2_ARCHS").unwrap_or_default(), ptx_only);
        let mut args = gencode_args(&archs);
        let common = ["--default-stream", "per-thread", "-std=c++17", "-O3", "--use_fast_math"];
        args.extend(common.map(String::from));
        // Includes name their file from kernels/ ("common/ptx.cuh"), whichever folder includes them.
        args.push(format!("-I{manifest_dir}/kernels"));
        if let Some(dims) = &hdims {
            // For the Rust side's error message.
            let list: Vec<String> = dims.iter().map(u32::to_string).collect();
            println!("cargo:rustc-env=CANDLE_FA2_HDIMS_BUILT={}", list.join(","));
            args.push("-DCANDLE_FA2_HDIMS_FILTER".into());
            args.extend(dims.iter().map(|d| format!("-DCANDLE_FA2_HAS_HDIM_{d}")));
        }
        // -fPIC and libstdc++ are the GNU toolchain's; MSVC builds position-independent code and links its
        // C++ runtime itself.
        let msvc = std::env::var("CARGO_CFG_TARGET_ENV").is_ok_and(|env| env == "msvc");
        if !msvc {
            args.extend(["-Xcompiler", "-fPIC"].map(String::from));
        }
        // A host compiler other than nvcc's default (as candle's own kernels' build takes it).
        println!("cargo:rerun-if-env-changed=NVCC_CCBIN");
        if let Ok(ccbin) = std::env::var("NVCC_CCBIN") {
            args.extend(["-allow-unsupported-compiler".into(), "-ccbin".into(), ccbin]);
        }
        args.extend(extra_flags.split_whitespace().map(String::from));

        // The library does not depend on this crate's features or profile, yet cargo runs this script once
        // per combination (CI's `clippy --features cuda` here and the crates that depend on candle-fa2 with
        // other profile settings): each run would spend nvcc's 4 minutes (2 cores) again. So the objects
        // live beside the build dirs of this profile, <target>/<profile>/build/, in a folder named by what
        // they are built from: this source tree, the toolkit, every nvcc flag (so each head-dim filter or
        // PTX-only build has its own library, and switching back and forth costs no rebuild). The library is
        // rebuilt when a kernel or header is newer than it.
        println!("cargo:rerun-if-env-changed=NVCC");
        let nvcc = std::env::var("NVCC").unwrap_or_else(|_| "nvcc".into());
        let nvcc_env = ["CUDA_ROOT", "CUDA_PATH", "CUDA_TOOLKIT_ROOT_DIR"].map(|v| {
            println!("cargo:rerun-if-env-changed={v}");
            std::env::var(v).unwrap_or_default()
        });
        let key = fnv1a(
            [manifest_dir.as_str(), nvcc.as_str()]
                .into_iter()
                .chain(nvcc_env.iter().map(String::as_str))
                .chain(args.iter().map(String::as_str)),
        );
        let out_dir = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
        let kernels_dir = match out_dir.ancestors().nth(2) {
            Some(build_dir) if build_dir.ends_with("build") => build_dir.join(format!("candle-fa2-kernels-{key:016x}")),
            _ => out_dir.clone(),
        };
        std::fs::create_dir_all(&kernels_dir).expect("the target dir is writable");
        let lib = kernels_dir.join("libcandle_fa2_kernels.a");
        if is_stale(&lib, kernels.iter().chain(&headers)) {
            build_lib(&nvcc, &args, &kernels, &kernels_dir, &lib);
        }
        println!("cargo:rustc-link-search=native={}", kernels_dir.display());
        println!("cargo:rustc-link-lib=static=candle_fa2_kernels");
        println!("cargo:rustc-link-lib=dylib=cudart");
        if !msvc {
            println!("cargo:rustc-link-lib=dylib=stdc++");
        }
    }

    /// Whether `lib` is missing or older than one of `sources`.
    fn is_stale<'a>(lib: &Path, mut sources: impl Iterator<Item = &'a PathBuf>) -> bool {
        let Ok(built) = lib.metadata().and_then(|m| m.modified()) else { return true };
        sources.any(|s| s.metadata().and_then(|m| m.modified()).map_or(true, |t| t >= built))
    }

    /// Compiles each kernel unit to an object in `dir` (as many nvcc at a time as cargo's jobs), then archives
    /// them into `lib`. Panics with the errors of every unit that failed.
    fn build_lib(nvcc: &str, args: &[String], kernels: &[PathBuf], dir: &Path, lib: &Path) {
        let objects: Vec<PathBuf> = kernels
            .iter()
            .map(|k| {
                let name = k.strip_prefix("kernels").unwrap_or(k).to_string_lossy().replace(['/', '\\'], "_");
                dir.join(name.trim_start_matches('_')).with_extension("o")
            })
            .collect();
        let jobs = std::env::var("NUM_JOBS").ok().and_then(|j| j.parse().ok()).unwrap_or(1usize).max(1);
        let next = AtomicUsize::new(0);
        let failures = Mutex::new(Vec::new());
        std::thread::scope(|scope| {
            for _ in 0..jobs.min(kernels.len()) {
                scope.spawn(|| loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(kernel) = kernels.get(i) else { break };
                    let mut cmd = Command::new(nvcc);
                    cmd.arg("-c").arg("-o").arg(&objects[i]).args(args).arg(kernel);
                    match cmd.output() {
                        Ok(out) if out.status.success() => {}
                        Ok(out) => failures.lock().unwrap().push(format!(
                            "{cmd:?}\n{}{}",
                            String::from_utf8_lossy(&out.stdout),
                            String::from_utf8_lossy(&out.stderr)
                        )),
                        Err(e) => failures.lock().unwrap().push(format!("{cmd:?}: cannot run {nvcc}: {e}")),
                    }
                });
            }
        });
        let failures = failures.into_inner().unwrap();
        if !failures.is_empty() {
            panic!("nvcc failed on {} of {} kernel units:\n\n{}", failures.len(), kernels.len(), failures.join("\n"));
        }
        // A fresh archive: members of units that no longer exist must not linger.
        let _ = std::fs::remove_file(lib);
        let mut cmd = Command::new(nvcc);
        cmd.arg("--lib").arg("-o").arg(lib).args(&objects);
        let out = cmd.output().unwrap_or_else(|e| panic!("cannot run {nvcc}: {e}"));
        if !out.status.success() {
            panic!("{cmd:?} failed:\n{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        }
    }

    const IMAGES: [&str; 3] = ["sm_80", "sm_90a", "compute_80"];

    /// The device images CANDLE_FA2_ARCHS names (all when unset or empty; compute_80 alone for
    /// CANDLE_FA2_PTX_ONLY), checked against those this build knows.
    fn device_images(value: &str, ptx_only: bool) -> BTreeSet<&'static str> {
        let images: BTreeSet<&'static str> = if value.trim().is_empty() {
            if ptx_only {
                BTreeSet::from(["compute_80"])
            } else {
                IMAGES.into()
            }
        } else {
            value
                .split(',')
                .map(|a| match IMAGES.iter().find(|known| **known == a.trim()) {
                    Some(known) => *known,
                    None => panic!("CANDLE_FA2_ARCHS={value}: {a:?} is not one of {IMAGES:?}"),
                })
                .collect()
        };
        if ptx_only && images != BTreeSet::from(["compute_80"]) {
            panic!("CANDLE_FA2_PTX_ONLY=1 builds compute_80 alone, CANDLE_FA2_ARCHS={value} asks otherwise");
        }
        images
    }

    /// nvcc's -gencode flags for the images (sm_80 machine code and compute_80 PTX from one compute_80
    /// compile), and the define by which the kernels know that sm_90a code is there.
    fn gencode_args(images: &BTreeSet<&str>) -> Vec<String> {
        let mut args = Vec::new();
        match (images.contains("sm_80"), images.contains("compute_80")) {
            (true, true) => args.push("-gencode=arch=compute_80,code=[sm_80,compute_80]".to_string()),
            (true, false) => args.push("-gencode=arch=compute_80,code=sm_80".to_string()),
            (false, true) => args.push("-gencode=arch=compute_80,code=compute_80".to_string()),
            (false, false) => {}
        }
        if images.contains("sm_90a") {
            args.extend(["-gencode=arch=compute_90a,code=sm_90a", "-DCANDLE_FA2_HAS_SM90A"].map(String::from));
        }
        args
    }

    /// The .cu files (kernels) and headers under `dir`, recursively.
    fn walk(dir: &Path, kernels: &mut Vec<PathBuf>, headers: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display())) {
            let path = entry.expect("readable kernels/ entry").path();
            match path.extension().and_then(|e| e.to_str()) {
                _ if path.is_dir() => walk(&path, kernels, headers),
                Some("cu") => kernels.push(path),
                Some("cuh" | "h") => headers.push(path),
                _ => {}
            }
        }
    }

    /// The head_dim of a generated instantiation, from its name (`fwd_hdim128_bf16.cu`: 128); None for the
    /// files every build compiles.
    fn head_dim_of(kernel: &Path) -> Option<u32> {
        let name = kernel.file_stem()?.to_str()?;
        let digits: String = name.split_once("_hdim")?.1.chars().take_while(char::is_ascii_digit).collect();
        digits.parse().ok()
    }

    /// The head dims CANDLE_FA2_HDIMS names, checked against those the generated files instantiate; None
    /// when it is unset or empty (all of them).
    fn head_dim_filter(value: &str, kernels: &[PathBuf]) -> Option<BTreeSet<u32>> {
        if value.trim().is_empty() {
            return None;
        }
        let known: BTreeSet<u32> = kernels.iter().filter_map(|k| head_dim_of(k)).collect();
        let dims = value
            .split(',')
            .map(|d| match d.trim().parse::<u32>() {
                Ok(d) if known.contains(&d) => d,
                _ => panic!("CANDLE_FA2_HDIMS={value}: {d:?} is not an instantiated head_dim ({known:?})"),
            })
            .collect();
        Some(dims)
    }

    /// FNV-1a over the parts (each followed by a 0 byte): a stable name for the kernels' folder.
    fn fnv1a<'a>(parts: impl Iterator<Item = &'a str>) -> u64 {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for part in parts {
            for b in part.bytes().chain([0]) {
                h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
            }
        }
        h
    }
}
