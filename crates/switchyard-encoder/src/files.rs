//! Finding and checking the encoder's files before loading them.
//!
//! The files are fetched by `models/fetch.sh`, never committed. A missing
//! or altered file stops the node at start with the command that fixes it,
//! rather than failing on the first request or, worse, routing with a
//! different model than the one evaluated.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::EncoderError;

/// The command that fetches and checks the files.
pub const FETCH_COMMAND: &str = "models/fetch.sh";

/// Where `models/fetch.sh` puts the files, relative to the repository root.
pub const DEFAULT_MODEL_DIR: &str = "models/cache/all-minilm-l6-v2";

const MODEL_FILE: &str = "model.safetensors";
const TOKENIZER_FILE: &str = "tokenizer.json";
const MODEL_SHA256: &str = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db";
const TOKENIZER_SHA256: &str = "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037";

/// The checked contents of the encoder's files.
#[derive(Debug)]
pub struct EncoderFiles {
    pub model: Vec<u8>,
    pub tokenizer_path: PathBuf,
}

fn read_checked(dir: &Path, name: &str, sha256: &str) -> Result<Vec<u8>, EncoderError> {
    let path = dir.join(name);
    let bytes = std::fs::read(&path).map_err(|err| EncoderError::MissingFile {
        path: path.clone(),
        reason: err.to_string(),
    })?;
    let actual = hex::encode(Sha256::digest(&bytes));
    if actual != sha256 {
        return Err(EncoderError::CorruptFile {
            path,
            expected: sha256.to_owned(),
            actual,
        });
    }
    Ok(bytes)
}

impl EncoderFiles {
    /// Reads both files from `dir` and checks their sha256.
    pub fn load(dir: &Path) -> Result<EncoderFiles, EncoderError> {
        let model = read_checked(dir, MODEL_FILE, MODEL_SHA256)?;
        // The tokenizer is small; reading it twice (here and by the
        // tokenizers crate) buys the checksum check.
        read_checked(dir, TOKENIZER_FILE, TOKENIZER_SHA256)?;
        Ok(EncoderFiles {
            model,
            tokenizer_path: dir.join(TOKENIZER_FILE),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_directory_names_the_fetch_command() {
        let err = EncoderFiles::load(Path::new("/nonexistent/encoder")).unwrap_err();
        let message = err.to_string();
        assert!(message.contains("model.safetensors"), "{message}");
        assert!(message.contains(FETCH_COMMAND), "{message}");
    }

    #[test]
    fn a_corrupt_file_is_refused_with_the_fetch_command() {
        let dir = std::env::temp_dir().join(format!("switchyard-encoder-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(MODEL_FILE), b"not the model").unwrap();
        let message = EncoderFiles::load(&dir).unwrap_err().to_string();
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(message.contains("sha256"), "{message}");
        assert!(message.contains(FETCH_COMMAND), "{message}");
    }
}
