//! The training text, generated from a seeded grammar (no download, any size): two-sentence stories whose
//! second sentence names again the people of the first, in an order the template fixes. Those names cannot
//! be guessed from the few characters before them, only by attending back to the first sentence, so the
//! loss on them falls only when attention works.

use anyhow::{bail, Result};
use rand::{rngs::StdRng, seq::IndexedRandom, Rng, SeedableRng};

const NAMES: [&str; 12] =
    ["alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy", "mallory", "oscar"];
const PLACES: [&str; 8] = ["market", "library", "harbour", "garden", "station", "bakery", "museum", "forest"];
const THINGS: [&str; 8] =
    ["red ball", "old map", "blue kite", "small boat", "green apple", "silver key", "wooden box", "paper crown"];

/// `count` stories, one per line.
pub fn stories(count: usize, seed: u64) -> String {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut text = String::new();
    for _ in 0..count {
        let pick = |rng: &mut StdRng, words: &[&'static str]| *words.choose(rng).expect("word lists are not empty");
        let a = pick(&mut rng, &NAMES);
        let b = loop {
            let b = pick(&mut rng, &NAMES);
            if b != a {
                break b;
            }
        };
        let (place, thing) = (pick(&mut rng, &PLACES), pick(&mut rng, &THINGS));
        text += &match rng.random_range(0..3) {
            0 => format!("{a} met {b} at the {place}. {b} gave {a} the {thing}.\n"),
            1 => format!("{a} and {b} went to the {place}. {a} found the {thing} there.\n"),
            _ => format!("at the {place}, {a} showed {b} the {thing}. {b} thanked {a}.\n"),
        };
    }
    text
}

/// One token per distinct character of the corpus.
pub struct CharVocab {
    chars: Vec<char>,
}

impl CharVocab {
    pub fn new(corpus: &str) -> Self {
        let mut chars: Vec<char> = corpus.chars().collect();
        chars.sort_unstable();
        chars.dedup();
        Self { chars }
    }

    pub fn size(&self) -> usize {
        self.chars.len()
    }

    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        text.chars()
            .map(|c| match self.chars.binary_search(&c) {
                Ok(i) => Ok(i as u32),
                Err(_) => bail!("{c:?} is not in the corpus's characters {:?}", String::from_iter(&self.chars)),
            })
            .collect()
    }

    pub fn decode(&self, tokens: &[u32]) -> String {
        tokens.iter().map(|&t| self.chars.get(t as usize).copied().unwrap_or(char::REPLACEMENT_CHARACTER)).collect()
    }
}
