//! SmolLM2's tokenizer, built from the GGUF metadata with the `tokenizers` crate: byte-level BPE (GPT-2 style)
//! over `tokenizer.ggml.tokens` and `tokenizer.ggml.merges`, digits split one by one before the byte-level
//! regex (llama.cpp's `smollm` pre-tokenizer, Hugging Face's `Digits` + `ByteLevel`), and the control tokens
//! (`<|im_start|>`, `<|im_end|>`, ...) as special tokens. Plus the ChatML template of the instruct model.

use anyhow::{bail, Context, Result};
use tokenizers::{
    decoders::DecoderWrapper,
    models::{
        bpe::{Vocab, BPE},
        ModelWrapper,
    },
    normalizers::NormalizerWrapper,
    pre_tokenizers::{byte_level::ByteLevel, digits::Digits, sequence::Sequence, PreTokenizerWrapper},
    processors::PostProcessorWrapper,
    AddedToken, DecodeStream, Tokenizer,
};

use crate::gguf::Gguf;

/// The system turn the model's own chat template inserts when the conversation has none.
pub const DEFAULT_SYSTEM_PROMPT: &str = "You are a helpful AI assistant named SmolLM, trained by Hugging Face";

// llama.cpp's token_type for control tokens.
const TOKEN_TYPE_CONTROL: i32 = 3;

pub type TokenStream<'a> =
    DecodeStream<'a, ModelWrapper, NormalizerWrapper, PreTokenizerWrapper, PostProcessorWrapper, DecoderWrapper>;

pub struct ChatTokenizer {
    tokenizer: Tokenizer,
    im_start: u32,
    im_end: u32,
    /// Generation stops at any of these (`<|im_end|>` ends an assistant turn; `<|endoftext|>` a document).
    stop_ids: Vec<u32>,
}

impl ChatTokenizer {
    pub fn from_gguf(gguf: &Gguf) -> Result<Self> {
        let model = gguf.metadata("tokenizer.ggml.model")?.to_string()?;
        if model != "gpt2" {
            bail!("tokenizer.ggml.model is {model:?}: only byte-level BPE (\"gpt2\") is supported")
        }
        // The pre-tokenizer regex differs between model families; this one is SmolLM's (and StarCoder's).
        let pre = gguf.metadata("tokenizer.ggml.pre")?.to_string()?;
        if pre != "smollm" {
            bail!("tokenizer.ggml.pre is {pre:?}: only SmolLM's pre-tokenizer (\"smollm\") is supported")
        }
        let tokens = gguf.string_array("tokenizer.ggml.tokens")?;
        let merges = gguf
            .string_array("tokenizer.ggml.merges")?
            .into_iter()
            .map(|m| match m.split_once(' ') {
                Some((a, b)) => Ok((a.to_string(), b.to_string())),
                None => bail!("GGUF merge {m:?} is not two tokens separated by a space"),
            })
            .collect::<Result<Vec<_>>>()?;
        let token_types = gguf.metadata("tokenizer.ggml.token_type")?.to_vec()?;
        if token_types.len() != tokens.len() {
            bail!("GGUF has {} tokens but {} token types", tokens.len(), token_types.len())
        }
        let vocab: Vocab = tokens.iter().enumerate().map(|(id, t)| (t.clone(), id as u32)).collect();
        let bpe = BPE::builder().vocab_and_merges(vocab, merges).build().map_err(anyhow::Error::msg)?;

        let mut tokenizer = Tokenizer::new(bpe);
        let pre_tokenizer = Sequence::new(vec![Digits::new(true).into(), ByteLevel::new(false, true, true).into()]);
        tokenizer.with_pre_tokenizer(Some(pre_tokenizer));
        tokenizer.with_decoder(Some(ByteLevel::default()));
        let mut special = Vec::new();
        for (token, ty) in tokens.iter().zip(token_types) {
            if ty.to_i32()? == TOKEN_TYPE_CONTROL {
                special.push(AddedToken::from(token.clone(), true));
            }
        }
        tokenizer.add_special_tokens(special).map_err(anyhow::Error::msg)?;
        // Text is text: a user typing "<|im_end|>" gets those characters, not a turn boundary; the template
        // inserts the control tokens by id.
        tokenizer.set_encode_special_tokens(true);

        let id = |token: &str| tokenizer.token_to_id(token).with_context(|| format!("the vocabulary has no {token}"));
        let (im_start, im_end) = (id("<|im_start|>")?, id("<|im_end|>")?);
        let mut stop_ids = vec![im_end, id("<|endoftext|>")?];
        let eos = gguf.u32_value("tokenizer.ggml.eos_token_id")?;
        if !stop_ids.contains(&eos) {
            stop_ids.push(eos);
        }
        Ok(Self { tokenizer, im_start, im_end, stop_ids })
    }

    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let encoding = self.tokenizer.encode_fast(text, false).map_err(anyhow::Error::msg)?;
        Ok(encoding.get_ids().to_vec())
    }

    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.tokenizer.decode(ids, false).map_err(anyhow::Error::msg)
    }

    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.tokenizer.token_to_id(token)
    }

    pub fn vocab_size(&self) -> usize {
        self.tokenizer.get_vocab_size(true)
    }

    /// Text for generated ids, one id at a time: an id that ends inside a UTF-8 character yields nothing until
    /// the character is complete, so partial bytes never print. Control tokens are skipped.
    pub fn stream(&self) -> TokenStream<'_> {
        self.tokenizer.decode_stream(true)
    }

    pub fn is_stop(&self, id: u32) -> bool {
        self.stop_ids.contains(&id)
    }

    /// The ChatML prompt of one user turn, ending where the assistant's answer starts, as the model's
    /// template renders it: `<|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\n{user}<|im_end|>\n
    /// <|im_start|>assistant\n`.
    pub fn chat_prompt(&self, system: &str, user: &str) -> Result<Vec<u32>> {
        let mut ids = Vec::new();
        for (role, content) in [("system", system), ("user", user)] {
            ids.push(self.im_start);
            ids.extend(self.encode(&format!("{role}\n{content}"))?);
            ids.push(self.im_end);
            ids.extend(self.encode("\n")?);
        }
        ids.push(self.im_start);
        ids.extend(self.encode("assistant\n")?);
        Ok(ids)
    }
}
