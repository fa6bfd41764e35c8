//! GPT-2's tokenizer: byte-level BPE with the r50k_base ranks that `tiktoken-rs` embeds (GPT-2's 50,257
//! tokens), and a streaming decoder that prints only whole UTF-8 characters.

use anyhow::{anyhow, Result};
use tiktoken_rs::CoreBPE;

pub struct Gpt2Tokenizer {
    bpe: CoreBPE,
}

impl Gpt2Tokenizer {
    /// `<|endoftext|>`: ends a document, and starts one when there is no prompt.
    pub const END_OF_TEXT: u32 = 50256;

    pub fn new() -> Result<Self> {
        Ok(Self { bpe: tiktoken_rs::r50k_base()? })
    }

    /// The prompt is plain text: a literal `<|endoftext|>` in it is encoded as text, not as the special token.
    pub fn encode(&self, text: &str) -> Vec<u32> {
        self.bpe.encode_ordinary(text)
    }

    pub fn stream(&self) -> TokenStream<'_> {
        TokenStream { tokenizer: self, pending: Vec::new() }
    }

    fn token_bytes(&self, token: u32) -> Result<Vec<u8>> {
        self.bpe.decode_bytes(&[token]).map_err(|e| anyhow!("token {} is not in GPT-2's vocabulary", e.token))
    }
}

/// Decodes generated tokens one at a time. A token can end in the middle of a multi-byte character (GPT-2
/// splits emoji and CJK across tokens), so bytes wait here until their character is complete.
pub struct TokenStream<'a> {
    tokenizer: &'a Gpt2Tokenizer,
    pending: Vec<u8>,
}

impl TokenStream<'_> {
    /// The text that `token` completes (often empty or several characters).
    pub fn push(&mut self, token: u32) -> Result<String> {
        self.pending.extend(self.tokenizer.token_bytes(token)?);
        let mut text = String::new();
        loop {
            match std::str::from_utf8(&self.pending) {
                Ok(complete) => {
                    text.push_str(complete);
                    self.pending.clear();
                    return Ok(text);
                }
                Err(e) => {
                    let valid = e.valid_up_to();
                    text.push_str(std::str::from_utf8(&self.pending[..valid])?);
                    match e.error_len() {
                        // Bytes that no continuation can make valid (a random model emits them): shown as U+FFFD.
                        Some(bad) => {
                            text.push(char::REPLACEMENT_CHARACTER);
                            self.pending.drain(..valid + bad);
                        }
                        None => {
                            self.pending.drain(..valid);
                            return Ok(text);
                        }
                    }
                }
            }
        }
    }

    /// What is left when generation stops mid-character, with U+FFFD for the incomplete bytes.
    pub fn finish(self) -> String {
        String::from_utf8_lossy(&self.pending).into_owned()
    }
}
