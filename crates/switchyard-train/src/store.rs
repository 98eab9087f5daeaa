//! Encoder outputs cached on disk, keyed by text: training reads each
//! message's embedding many times (epochs, phrasings, repeated dialogue
//! prefixes) but the encoder is the slow part, so each text is encoded once
//! across runs.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use switchyard_encoder::{Embedding, Encoder, HIDDEN};
use switchyard_eval::corpus::stable_hash;

use crate::TrainError;

/// Texts per encoder call; sorted by length so a batch pads little.
const CHUNK: usize = 64;

/// Text → embedding, persisted with bincode.
#[derive(Debug, Default)]
pub struct EmbeddingStore {
    vectors: HashMap<u64, Embedding>,
    path: Option<PathBuf>,
    /// Texts encoded since loading.
    pub encoded: usize,
}

fn key(text: &str) -> u64 {
    stable_hash(&["text", text])
}

impl EmbeddingStore {
    /// Opens the store at `path` (empty if the file does not exist yet).
    pub fn open(path: &Path) -> Result<EmbeddingStore, TrainError> {
        let mut store = EmbeddingStore {
            path: Some(path.to_path_buf()),
            ..EmbeddingStore::default()
        };
        if let Ok(bytes) = std::fs::read(path) {
            let (entries, _): (Vec<(u64, Vec<f32>)>, usize) =
                bincode::serde::decode_from_slice(&bytes, bincode::config::standard())
                    .map_err(|err| TrainError::Store(format!("{}: {err}", path.display())))?;
            store.vectors = entries
                .into_iter()
                .filter(|(_, v)| v.len() == HIDDEN)
                .map(|(k, v)| (k, Embedding::from(v)))
                .collect();
        }
        Ok(store)
    }

    pub fn len(&self) -> usize {
        self.vectors.len()
    }

    pub fn is_empty(&self) -> bool {
        self.vectors.is_empty()
    }

    pub fn get(&self, text: &str) -> Option<Embedding> {
        self.vectors.get(&key(text)).cloned()
    }

    /// Encodes the texts not yet stored, calling `progress` with the number
    /// done after each chunk, then saves.
    pub fn fill<'a>(
        &mut self,
        encoder: &Arc<Encoder>,
        texts: impl IntoIterator<Item = &'a str>,
        mut progress: impl FnMut(usize, usize),
    ) -> Result<(), TrainError> {
        let mut missing: Vec<&str> = texts.into_iter().filter(|t| !self.vectors.contains_key(&key(t))).collect();
        missing.sort_unstable();
        missing.dedup();
        missing.sort_by_key(|t| t.len());
        let total = missing.len();
        for (i, chunk) in missing.chunks(CHUNK).enumerate() {
            let vectors = encoder.embed(chunk)?;
            for (text, vector) in chunk.iter().zip(vectors) {
                self.vectors.insert(key(text), vector);
            }
            self.encoded += chunk.len();
            progress((i * CHUNK + chunk.len()).min(total), total);
            // Save now and then: an interrupted run keeps what it encoded.
            if i % 200 == 199 {
                self.save()?;
            }
        }
        self.save()
    }

    pub fn save(&self) -> Result<(), TrainError> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let mut entries: Vec<(u64, Vec<f32>)> = self.vectors.iter().map(|(k, v)| (*k, v.to_vec())).collect();
        entries.sort_by_key(|(k, _)| *k);
        let bytes = bincode::serde::encode_to_vec(&entries, bincode::config::standard())
            .map_err(|err| TrainError::Store(err.to_string()))?;
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|err| TrainError::Io(parent.display().to_string(), err))?;
        }
        let partial = path.with_extension("partial");
        std::fs::write(&partial, bytes).map_err(|err| TrainError::Io(partial.display().to_string(), err))?;
        std::fs::rename(&partial, path).map_err(|err| TrainError::Io(path.display().to_string(), err))
    }
}
