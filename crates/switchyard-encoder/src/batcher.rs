//! Dynamic batching: requests that arrive together share one forward pass.
//!
//! One thread owns the model (the encoder is CPU- or GPU-bound, so it runs
//! off the async runtime). It blocks for the first job, then gathers more
//! until the batch is full or the wait is over, pads them to the batch's
//! longest sequence, runs the model once and answers each job.

use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender};
use std::time::{Duration, Instant};

use crate::EncoderError;

/// Jobs waiting for the encoder thread before senders block.
const QUEUE_DEPTH: usize = 1024;

/// A model that turns token-id sequences into vectors, batch by batch.
pub trait BatchModel: Send + 'static {
    fn encode_batch(&self, batch: &[Vec<u32>]) -> Result<Vec<Vec<f32>>, EncoderError>;
}

struct Job {
    ids: Vec<u32>,
    reply: SyncSender<Result<Vec<f32>, EncoderError>>,
}

/// Handle to the encoder thread; cheap to clone.
#[derive(Clone)]
pub struct Batcher {
    jobs: SyncSender<Job>,
}

impl std::fmt::Debug for Batcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Batcher")
    }
}

/// Pending answers for jobs submitted together.
#[derive(Debug)]
pub struct Pending(Vec<Receiver<Result<Vec<f32>, EncoderError>>>);

impl Pending {
    /// Blocks until every job is answered, in submission order.
    pub fn wait(self) -> Result<Vec<Vec<f32>>, EncoderError> {
        self.0
            .into_iter()
            .map(|reply| reply.recv().map_err(|_| EncoderError::Stopped)?)
            .collect()
    }
}

impl Batcher {
    /// Starts the encoder thread; it stops when every handle is dropped.
    pub fn start(
        model: impl BatchModel,
        max_batch: usize,
        max_wait: Duration,
    ) -> Result<Batcher, EncoderError> {
        let (jobs, queue) = mpsc::sync_channel::<Job>(QUEUE_DEPTH);
        std::thread::Builder::new()
            .name("switchyard-encoder".to_owned())
            .spawn(move || run(&model, &queue, max_batch.max(1), max_wait))
            .map_err(|err| EncoderError::Thread(err.to_string()))?;
        Ok(Batcher { jobs })
    }

    /// Queues sequences for encoding; jobs queued by other callers at the
    /// same moment may share their forward pass.
    pub fn submit(&self, sequences: Vec<Vec<u32>>) -> Result<Pending, EncoderError> {
        let mut replies = Vec::with_capacity(sequences.len());
        for ids in sequences {
            let (reply, answer) = mpsc::sync_channel(1);
            self.jobs
                .send(Job { ids, reply })
                .map_err(|_| EncoderError::Stopped)?;
            replies.push(answer);
        }
        Ok(Pending(replies))
    }
}

fn run(model: &impl BatchModel, queue: &Receiver<Job>, max_batch: usize, max_wait: Duration) {
    while let Ok(first) = queue.recv() {
        let mut batch = vec![first];
        let deadline = Instant::now() + max_wait;
        while batch.len() < max_batch {
            let left = deadline.saturating_duration_since(Instant::now());
            match queue.recv_timeout(left) {
                Ok(job) => batch.push(job),
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => break,
            }
        }
        let sequences: Vec<Vec<u32>> = batch.iter_mut().map(|job| std::mem::take(&mut job.ids)).collect();
        match model.encode_batch(&sequences) {
            Ok(vectors) => {
                for (job, vector) in batch.into_iter().zip(vectors) {
                    // A caller that gave up is no loss.
                    let _ = job.reply.send(Ok(vector));
                }
            }
            Err(err) => {
                tracing::error!(error = %err, size = sequences.len(), "encoder batch failed");
                for job in batch {
                    let _ = job.reply.send(Err(err.clone()));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    /// Records batch sizes; the "vector" is the sequence length.
    struct Recorder(Arc<Mutex<Vec<usize>>>);

    impl BatchModel for Recorder {
        fn encode_batch(&self, batch: &[Vec<u32>]) -> Result<Vec<Vec<f32>>, EncoderError> {
            self.0.lock().unwrap().push(batch.len());
            Ok(batch.iter().map(|ids| vec![ids.len() as f32]).collect())
        }
    }

    #[test]
    fn jobs_submitted_together_share_a_batch_bounded_in_size() {
        let sizes = Arc::new(Mutex::new(Vec::new()));
        let batcher = Batcher::start(Recorder(sizes.clone()), 4, Duration::from_millis(200)).unwrap();
        let answers = batcher
            .submit((1..=6).map(|n| vec![0; n]).collect())
            .unwrap()
            .wait()
            .unwrap();
        assert_eq!(answers, (1..=6).map(|n| vec![n as f32]).collect::<Vec<_>>());
        assert_eq!(*sizes.lock().unwrap(), vec![4, 2]);
    }
}
