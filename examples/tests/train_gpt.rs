//! The training example's pieces on CPU: a few AdamW steps of a small GPT give the same losses with our
//! attention and with the softmax-matmul one, the loss falls, and the backward pass reaches every weight.

use anyhow::Result;
use candle_core::{DType, Device, Tensor};
use candle_fa2::AttnImpl;
use candle_fa2_examples::{
    gpt::{Gpt, GptConfig, SeededInit},
    train_gpt::{
        corpus::{self, CharVocab},
        train::{TrainSettings, Trainer},
    },
};
use candle_nn::{VarBuilder, VarMap};

const CPU: Device = Device::Cpu;

fn tiny_config(vocab: &CharVocab) -> GptConfig {
    GptConfig { vocab_size: vocab.size(), n_positions: 32, n_embd: 32, n_layer: 2, n_head: 4 }
}

fn losses(attn: AttnImpl, steps: usize) -> Result<Vec<f32>> {
    let text = corpus::stories(300, 1);
    let vocab = CharVocab::new(&text);
    let settings = TrainSettings { batch: 4, seq_len: 32, learning_rate: 1e-2, seed: 5 };
    let mut trainer = Trainer::new(tiny_config(&vocab), vocab.encode(&text)?, attn, &settings, &CPU)?;
    (0..steps).map(|_| Ok(trainer.step()?.loss)).collect()
}

#[test]
fn flash_and_naive_attention_train_to_the_same_losses() -> Result<()> {
    let steps = 12;
    let (flash, naive) = (losses(AttnImpl::Flash, steps)?, losses(AttnImpl::Naive, steps)?);
    // Measured: at most 1e-6 apart over these steps; a naive attention that gives q and k no gradient is
    // 1e-4 apart by step 5.
    for (step, (a, b)) in flash.iter().zip(&naive).enumerate() {
        assert!((a - b).abs() <= 2e-5 * a, "step {step}: flash loss {a}, naive loss {b}\n{flash:?}\n{naive:?}");
    }
    assert!(flash[steps - 1] < 0.9 * flash[0], "the loss did not fall: {flash:?}");
    Ok(())
}

/// Every weight gets a non-zero gradient, with either attention. The position embedding reaches the loss only
/// through LayerNorms and attention, so it catches an op in the path that records no backward (candle's fused
/// layer_norm and softmax_last_dim), which would otherwise only show as a model that learns less.
#[test]
fn the_backward_pass_reaches_every_weight() -> Result<()> {
    let vocab = CharVocab::new(&corpus::stories(50, 2));
    for attn in [AttnImpl::Flash, AttnImpl::Naive] {
        let vars = VarMap::new();
        let vb = VarBuilder::from_backend(Box::new(SeededInit::new(9, Some(vars.clone()))), DType::F32, CPU);
        let model = Gpt::new(tiny_config(&vocab), vb, attn)?;
        let tokens = vocab.encode("carol met ivan at the garden. ivan gave carol the old map.")?;
        let (inputs, targets) = (&tokens[..32], &tokens[1..33]);
        let logits = model.logits(&model.forward(&Tensor::new(inputs, &CPU)?.unsqueeze(0)?, None)?)?;
        let loss = candle_nn::loss::cross_entropy(&logits.squeeze(0)?, &Tensor::new(targets, &CPU)?)?;
        let grads = loss.backward()?;
        let vars = vars.data().lock().unwrap();
        assert_eq!(vars.len(), 2 + 12 * 2 + 2, "embeddings, 12 tensors a block, the final LayerNorm");
        for (name, var) in vars.iter() {
            let Some(grad) = grads.get(var.as_tensor()) else { panic!("{attn}: no gradient for {name}") };
            let norm = grad.sqr()?.sum_all()?.to_scalar::<f32>()?;
            assert!(norm > 0.0 && norm.is_finite(), "{attn}: gradient of {name} has squared norm {norm}");
        }
    }
    Ok(())
}

#[test]
fn the_corpus_is_seeded_and_its_vocabulary_round_trips() -> Result<()> {
    let text = corpus::stories(100, 3);
    assert_eq!(text, corpus::stories(100, 3));
    assert_ne!(text, corpus::stories(100, 4));
    assert_eq!(text.lines().count(), 100);
    let vocab = CharVocab::new(&text);
    assert_eq!(vocab.decode(&vocab.encode(&text)?), text);
    assert!(vocab.encode("alice met zed").is_err(), "'z' is in no story");
    Ok(())
}
