//! The README's commands, run: every `cargo run --release --example NAME -- ARGS` it shows (code blocks,
//! the examples table, the text) runs here with the README's own arguments, on the binaries that this
//! `cargo test` built (cargo builds this crate's examples with its tests), and every `.gpu/run.sh MODE` it
//! shows is a mode of `scripts/gpu_run.sh`. A renamed flag, a broken example or a removed mode fails CI instead of
//! a user. Where a code block puts the expected output under a command (`# The capital of France is
//! Paris.`), the output must contain it.
//!
//! Arguments are only ever added, never replaced: the benchmarks and long runs get the few in [`SHRINK`]
//! so that the suite stays fast, and the placeholder prompt `"..."` becomes a real one. The other
//! commands of the README run elsewhere: `cargo test` and the CUDA set-up in `.ci/run`, the
//! candle-transformers command in `examples/transformers-llama/tests/`, the GPU scripts on the GPU host.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Arguments added to an example's README command when the command does not set them: sizes that keep
/// a debug-build run to seconds (the README's commands time 8k-token prefills and a 64k context).
const SHRINK: &[(&str, &[&str])] = &[
    ("llama", &["--max-tokens", "24"]),
    ("llama_bench", &["--contexts", "64", "--decode-tokens", "2"]),
    ("gpt2", &["--max-tokens", "8"]),
    ("train_gpt", &["--steps", "4", "--stories", "50", "--seq-len", "32", "--batch", "2"]),
    ("long_context", &["--seqlen", "2048"]),
];

/// Longest a README command may run here.
const TIME_LIMIT: Duration = Duration::from_secs(300);

/// The repository root: the README, the scripts and the workspace are there, this crate in examples/.
fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().expect("examples/ is in the repository").to_path_buf()
}

fn readme() -> String {
    std::fs::read_to_string(repo().join("README.md")).expect("README.md is readable")
}

/// Words of a shell command line: whitespace-separated, double quotes group (no escapes are used).
fn shell_words(line: &str) -> Vec<String> {
    let (mut words, mut word, mut quoted, mut any) = (Vec::new(), String::new(), false, false);
    for c in line.chars() {
        match c {
            '"' => (quoted, any) = (!quoted, true),
            c if c.is_whitespace() && !quoted => {
                if any {
                    words.push(std::mem::take(&mut word));
                }
                any = false;
            }
            c => (word, any) = (word + &c.to_string(), true),
        }
    }
    assert!(!quoted, "unbalanced quotes in README command: {line}");
    if any {
        words.push(word);
    }
    words
}

/// One README command: the example, its arguments and the output it promises (if any).
#[derive(Debug, PartialEq)]
struct ExampleCommand {
    example: String,
    args: Vec<String>,
    expect: Option<String>,
}

/// Every `cargo run --release --example NAME [-- ARGS]` of the README, once each, in order of appearance:
/// inside backticks the command ends at the closing backtick; in a code block at the end of the line or at
/// a `  #` comment. A `# TEXT` line right under a code-block command is its expected output.
fn example_commands(readme: &str) -> Vec<ExampleCommand> {
    const PREFIX: &str = "cargo run --release --example ";
    let mut commands: Vec<ExampleCommand> = Vec::new();
    let lines: Vec<&str> = readme.lines().collect();
    let mut in_block = false;
    for (n, line) in lines.iter().enumerate() {
        if line.trim_start().starts_with("```") {
            in_block = !in_block;
            continue;
        }
        let mut rest = *line;
        while let Some(at) = rest.find(PREFIX) {
            let after = &rest[at + PREFIX.len()..];
            let end = if in_block {
                after.find("  #").unwrap_or(after.len())
            } else {
                after.find('`').unwrap_or(after.len())
            };
            let words = shell_words(&after[..end]);
            rest = &after[end..];
            let (example, args) = words.split_first().expect("an example name after --example");
            let args = match args.split_first() {
                Some((dashes, args)) if dashes == "--" => args.to_vec(),
                None => Vec::new(),
                Some(_) => panic!("README line {}: arguments of --example {example} must follow `--`", n + 1),
            };
            let expect = in_block
                .then(|| lines.get(n + 1).and_then(|next| next.strip_prefix("# ")).map(str::to_string))
                .flatten();
            let cmd = ExampleCommand { example: example.clone(), args, expect };
            if !commands.iter().any(|c| c.example == cmd.example && c.args == cmd.args) {
                commands.push(cmd);
            }
        }
    }
    commands
}

/// Where cargo put the examples of this build: `target/<profile>/examples`, next to this test's
/// `target/<profile>/deps`.
fn examples_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    exe.parent().and_then(Path::parent).expect("target/<profile>/deps/<test>").join("examples")
}

/// Runs `exe args` to completion (at most TIME_LIMIT), returning (success, stdout + stderr).
fn run(exe: &Path, args: &[String]) -> (bool, String) {
    let dir = std::env::temp_dir().join(format!("candle-fa2-readme-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (out_path, err_path) = (dir.join("stdout"), dir.join("stderr"));
    let mut child = Command::new(exe)
        .args(args)
        .current_dir(repo())
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .spawn()
        .unwrap_or_else(|e| panic!("{} cannot start: {e}", exe.display()));
    let t0 = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if t0.elapsed() > TIME_LIMIT {
            child.kill().ok();
            child.wait().ok();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let output = std::fs::read_to_string(&out_path).unwrap_or_default()
        + &std::fs::read_to_string(&err_path).unwrap_or_default();
    std::fs::remove_dir_all(&dir).ok();
    match status {
        Some(status) => (status.success(), output),
        None => (false, format!("{output}\n(killed after {TIME_LIMIT:?})")),
    }
}

#[test]
fn readme_commands_are_found() {
    // The parser against the README's shapes of command, so that a change of layout that hides commands
    // from the test below fails here.
    let sample = "```sh\ncargo run --release --example llama -- --prompt \"What is it?\"\n# It is.\ncargo test\n```\n\
                  | `cargo run --release --example demo` | text `cargo run --release --example gpt2 -- --prompt \"...\"` |\n";
    let found = example_commands(sample);
    let words = |xs: &[&str]| xs.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    assert_eq!(
        found,
        vec![
            ExampleCommand {
                example: "llama".into(),
                args: words(&["--prompt", "What is it?"]),
                expect: Some("It is.".into())
            },
            ExampleCommand { example: "demo".into(), args: vec![], expect: None },
            ExampleCommand { example: "gpt2".into(), args: words(&["--prompt", "..."]), expect: None },
        ]
    );
    // Every example of this crate is shown in the README.
    let shown: Vec<String> = example_commands(&readme()).into_iter().map(|c| c.example).collect();
    for entry in std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("examples")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_stem().unwrap().to_string_lossy().to_string();
        let is_example = path.extension().is_some_and(|e| e == "rs") || path.join("main.rs").exists();
        if is_example {
            assert!(
                shown.contains(&name),
                "examples/examples/{name} has no `cargo run --release --example {name}` in the README"
            );
        }
    }
}

#[test]
fn readme_example_commands_run() {
    let commands = example_commands(&readme());
    assert!(commands.len() >= 7, "the README shows the examples: found only {commands:?}");
    let dir = examples_dir();
    let mut failures = Vec::new();
    for cmd in &commands {
        let exe = dir.join(format!("{}{}", cmd.example, std::env::consts::EXE_SUFFIX));
        assert!(
            exe.exists(),
            "{} is missing: run the whole `cargo test` (it builds the examples), not only this test",
            exe.display()
        );
        let mut args: Vec<String> =
            cmd.args.iter().map(|a| if a == "..." { "Hello".to_string() } else { a.clone() }).collect();
        for (example, extra) in SHRINK {
            if *example == cmd.example {
                for pair in extra.chunks(2) {
                    if !args.iter().any(|a| a == pair[0]) {
                        args.extend(pair.iter().map(|s| s.to_string()));
                    }
                }
            }
        }
        let t0 = Instant::now();
        let (ok, output) = run(&exe, &args);
        eprintln!("{} {:?}: {} in {:.1?}", cmd.example, args, if ok { "ok" } else { "FAILED" }, t0.elapsed());
        let tail: String =
            output.lines().rev().take(15).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n");
        if !ok {
            failures.push(format!("{} {:?} failed:\n{tail}", cmd.example, args));
        } else if let Some(expect) = &cmd.expect {
            if !output.contains(expect.as_str()) {
                failures.push(format!("{} {:?} did not print {expect:?}:\n{tail}", cmd.example, args));
            }
        }
    }
    assert!(failures.is_empty(), "README commands that fail:\n\n{}", failures.join("\n\n"));
}

#[test]
fn readme_gpu_modes_exist() {
    // `bash .gpu/run.sh MODE` is scripts/gpu_run.sh copied by scripts/gpu_pack.sh: each mode the README or
    // DEVELOP.md (the developers' guide, where most of them are) names must be a case of that script, and
    // each script they name must exist.
    let script = std::fs::read_to_string(repo().join("scripts/gpu_run.sh")).unwrap();
    let develop = std::fs::read_to_string(repo().join("DEVELOP.md")).expect("DEVELOP.md is readable");
    let docs = [("README", readme()), ("DEVELOP.md", develop)];
    // The labels of the script's `case "${1:-all}"`: lines `  a)` or `  a | b)`.
    let labels: Vec<&str> = script
        .lines()
        .filter_map(|l| l.strip_prefix("  ").and_then(|l| l.split_once(')')).map(|(label, _)| label))
        .filter(|label| label.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-| ".contains(c)))
        .flat_map(|label| label.split('|').map(str::trim))
        .collect();
    let mut modes = Vec::new();
    for (doc, text) in &docs {
        for line in text.lines() {
            let mut rest = line;
            while let Some(at) = rest.find(".gpu/run.sh ") {
                rest = &rest[at + ".gpu/run.sh ".len()..];
                let mode: String = rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '-').collect();
                if !mode.is_empty() && !mode.chars().all(|c| c.is_ascii_uppercase()) {
                    assert!(
                        labels.contains(&mode.as_str()),
                        "{doc} runs `.gpu/run.sh {mode}`, which scripts/gpu_run.sh does not have"
                    );
                    modes.push(mode);
                }
            }
        }
        for word in text.split(|c: char| c.is_whitespace() || c == '`' || c == '(' || c == ')') {
            if let Some(path) = word.strip_prefix("scripts/") {
                let path = path.trim_end_matches([',', '.', ':', ';']);
                if !path.is_empty() {
                    assert!(
                        repo().join("scripts").join(path).exists(),
                        "{doc} names scripts/{path}, which does not exist"
                    );
                }
            }
        }
    }
    assert!(modes.len() >= 8, "the README and DEVELOP.md show the GPU modes: found only {modes:?}");
}
