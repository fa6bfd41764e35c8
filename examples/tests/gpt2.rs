//! The GPT-2 example's pieces on CPU: the tokenizer against GPT-2's token ids, flash and naive attention
//! giving the same greedy tokens and close logits on the 124M model (seeded random weights), the KV cache
//! against a full recomputation, and loading a Hugging Face-layout checkpoint.

use std::collections::HashMap;

use anyhow::Result;
use candle_core::{DType, Device, IndexOp, Tensor, D};
use candle_fa2::AttnImpl;
use candle_fa2_examples::{
    gpt::{Gpt, GptConfig, SeededInit},
    gpt2::{checkpoint, generate::generate, tokenizer::Gpt2Tokenizer},
    sampling::Sampler,
};
use candle_nn::{VarBuilder, VarMap};

const CPU: Device = Device::Cpu;

fn random_model(cfg: GptConfig, seed: u64, attn: AttnImpl) -> Result<Gpt> {
    let vb = VarBuilder::from_backend(Box::new(SeededInit::new(seed, None)), DType::F32, CPU);
    Ok(Gpt::new(cfg, vb, attn)?)
}

fn decode(tokenizer: &Gpt2Tokenizer, tokens: &[u32]) -> Result<String> {
    let mut stream = tokenizer.stream();
    let mut text = String::new();
    for &token in tokens {
        text += &stream.push(token)?;
    }
    Ok(text + &stream.finish())
}

#[test]
fn tokenizer_gives_gpt2_token_ids() -> Result<()> {
    let tokenizer = Gpt2Tokenizer::new()?;
    assert_eq!(tokenizer.encode("Hello world"), [15496, 995]);
    assert_eq!(tokenizer.encode("Hello, world!"), [15496, 11, 995, 0]);
    assert_eq!(tokenizer.encode(" the."), [262, 13]);
    let literal = tokenizer.encode("<|endoftext|>");
    assert!(
        !literal.contains(&Gpt2Tokenizer::END_OF_TEXT),
        "plain text in a prompt, not the special token: {literal:?}"
    );
    assert_eq!(decode(&tokenizer, &[Gpt2Tokenizer::END_OF_TEXT])?, "<|endoftext|>");
    Ok(())
}

#[test]
fn tokenizer_round_trips_text_through_the_stream() -> Result<()> {
    let tokenizer = Gpt2Tokenizer::new()?;
    for text in ["The quick brown fox.\n\n  Indented, tabs\tand 1234567 digits", "naïve café — 東京 🚀🦀 ok", ""]
    {
        let tokens = tokenizer.encode(text);
        assert_eq!(decode(&tokenizer, &tokens)?, text, "{tokens:?}");
    }
    // "🚀" is split over tokens that are not UTF-8 alone: the stream holds the bytes until it is whole.
    let rocket = tokenizer.encode("🚀");
    assert!(rocket.len() > 1, "{rocket:?}");
    let mut stream = tokenizer.stream();
    assert_eq!(stream.push(rocket[0])?, "");
    assert_eq!(stream.finish(), "\u{FFFD}", "an incomplete character at the end is shown as U+FFFD");
    Ok(())
}

/// GPT-2 124M with random weights: greedy generation (prefill, then decode steps with seqlen_q = 1 against the
/// cache) gives the same tokens with either attention, and each generated token is the argmax of a full,
/// cache-free forward pass over the whole sequence, whose logits agree between the two attentions.
#[test]
fn flash_and_naive_give_the_same_greedy_tokens_on_gpt2_124m() -> Result<()> {
    let cfg = checkpoint::gpt2_124m();
    let prompt = Gpt2Tokenizer::new()?.encode("FlashAttention computes exact attention in tiles");
    let max_tokens = 12;
    let mut all_logits = Vec::new();
    let mut generated = Vec::new();
    for attn in [AttnImpl::Flash, AttnImpl::Naive] {
        let model = random_model(cfg, 7, attn)?;
        let mut greedy = Sampler::new(0, 0.0, 1.0, 1.0, 0)?;
        let generation = generate(&model, &prompt, max_tokens, None, &mut greedy, &CPU, |_| Ok(()))?;
        assert!(generation.prefill_secs > 0.0 && generation.decode_secs > 0.0, "both phases timed");
        let tokens = generation.tokens;
        assert_eq!(tokens.len(), max_tokens);

        let sequence = [prompt.as_slice(), &tokens[..max_tokens - 1]].concat();
        let input = Tensor::new(sequence.as_slice(), &CPU)?.unsqueeze(0)?;
        let logits = model.logits(&model.forward(&input, None)?)?.i(0)?; // (seq, vocab)
        let argmax = logits.i(prompt.len() - 1..)?.argmax(D::Minus1)?.to_vec1::<u32>()?;
        assert_eq!(argmax, tokens, "{attn}: decoding with the cache and recomputing everything differ");
        all_logits.push(logits);
        generated.push(tokens);
    }
    assert_eq!(generated[0], generated[1], "flash and naive greedy tokens");
    let diff = candle_fa2::reference::max_abs_diff(&all_logits[0], &all_logits[1])?;
    let scale = all_logits[1].abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()? as f64;
    assert!(diff <= 1e-4 * scale, "logits differ by {diff:.3e} (max |logit| {scale:.3})");
    Ok(())
}

/// A checkpoint in Hugging Face's layout (Conv1D weights stored (in, out), names under `transformer.`, the
/// causal-mask buffers and a tied `lm_head.weight` alongside) loads into the same model that wrote it.
#[test]
fn a_hugging_face_layout_checkpoint_loads_with_its_configuration() -> Result<()> {
    let cfg = GptConfig { vocab_size: 50257, n_positions: 32, n_embd: 128, n_layer: 2, n_head: 2 };
    let vars = VarMap::new();
    let vb = VarBuilder::from_backend(Box::new(SeededInit::new(3, Some(vars.clone()))), DType::F32, CPU);
    Gpt::new(cfg, vb, AttnImpl::Flash)?;
    let mut tensors: HashMap<String, Tensor> = vars
        .data()
        .lock()
        .unwrap()
        .iter()
        .map(|(name, var)| (format!("transformer.{name}"), var.as_tensor().detach()))
        .collect();
    assert_eq!(tensors["transformer.h.0.attn.c_attn.weight"].dims(), [128, 384], "Conv1D stores (in, out)");
    tensors.insert("lm_head.weight".into(), tensors["transformer.wte.weight"].clone());
    for i in 0..cfg.n_layer {
        tensors.insert(format!("transformer.h.{i}.attn.bias"), Tensor::ones((1, 1, 32, 32), DType::F32, &CPU)?);
    }
    let path = std::env::temp_dir().join(format!("candle-fa2-gpt2-test-{}.safetensors", std::process::id()));
    candle_core::safetensors::save(&tensors, &path)?;
    let loaded = checkpoint::load(&path);
    std::fs::remove_file(&path)?;
    let loaded = loaded?;

    assert_eq!(checkpoint::config(&loaded)?, cfg);
    let from_file = Gpt::new(cfg, VarBuilder::from_tensors(loaded, DType::F32, &CPU), AttnImpl::Flash)?;
    let drawn = random_model(cfg, 3, AttnImpl::Flash)?;
    let input = Tensor::new(&[[464u32, 2068, 7586, 21831, 13]], &CPU)?;
    let logits = |m: &Gpt| m.logits(&m.forward(&input, None)?);
    assert_eq!(candle_fa2::reference::max_abs_diff(&logits(&from_file)?, &logits(&drawn)?)?, 0.0);
    Ok(())
}
