//! candle-transformers' `llama::Config` for the SmolLM2 configuration read from the GGUF.

use candle_transformers::models::llama;

use candle_fa2_examples::gguf::LlamaConfig;

/// `use_flash_attn`: candle-transformers calls `candle_flash_attn::flash_attn`, which the patch makes
/// candle-fa2's; otherwise its own softmax-matmul attention.
pub fn llama_config(cfg: &LlamaConfig, use_flash_attn: bool) -> llama::Config {
    llama::Config {
        hidden_size: cfg.hidden_size,
        intermediate_size: cfg.intermediate_size,
        vocab_size: cfg.vocab_size,
        num_hidden_layers: cfg.num_hidden_layers,
        num_attention_heads: cfg.num_attention_heads,
        num_key_value_heads: cfg.num_key_value_heads,
        use_flash_attn,
        rms_norm_eps: cfg.rms_norm_eps,
        rope_theta: cfg.rope_theta,
        bos_token_id: None,
        eos_token_id: None,
        rope_scaling: None,
        max_position_embeddings: cfg.max_position_embeddings,
        tie_word_embeddings: cfg.tie_word_embeddings,
    }
}
