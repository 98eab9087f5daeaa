//! Dynamic batching: requests that arrive together share one forward pass.
//!
//! One thread owns the model (the encoder is CPU- or GPU-bound, so it runs
//! off the async runtime). It blocks for the first job, takes every job
//! already queued, pads the batch to its longest sequence, runs the model
//! once and answers each job.
//!
//! Waiting for company only pays under load: an idle encoder that waited
//! `max_wait` for a second job would add that wait to every lone request.
//! So the batcher waits (bounded by `max_wait` and `max_batch`) only while
//! it is busy, that is when its previous pass held several jobs or left
//! jobs queued; otherwise a lone job runs at once.

use std::collections::VecDeque;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TryRecvError};
use std::time::{Duration, Instant};

use crate::EncoderError;

/// Jobs waiting for the encoder thread before senders block.
const QUEUE_DEPTH: usize = 1024;

/// A model that turns token-id sequences into vectors, batch by batch.
/// It lives on the encoder thread: one that cannot move between threads
/// (the CPU encoder's kernels) is built there, by [`Batcher::start_with`].
pub trait BatchModel: 'static {
    fn encode_batch(&self, batch: &[Vec<u32>]) -> Result<Vec<Vec<f32>>, EncoderError>;

    /// Work done on the encoder thread before the first job (compiling
    /// kernels, say); returns how many input shapes it prepared.
    fn warm_up(&self) -> Result<usize, EncoderError> {
        Ok(0)
    }
}

struct Job {
    ids: Vec<u32>,
    reply: SyncSender<Result<Vec<f32>, EncoderError>>,
}

/// Handle to the encoder thread; cheap to clone.
///
/// The queue carries one group of jobs per [`Batcher::submit`] call, so the
/// sequences of one request always reach the encoder together.
#[derive(Clone)]
pub struct Batcher {
    jobs: SyncSender<Vec<Job>>,
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
        model: impl BatchModel + Send,
        max_batch: usize,
        max_wait: Duration,
    ) -> Result<Batcher, EncoderError> {
        Batcher::start_with(move || Ok(model), max_batch, max_wait)
    }

    /// Starts the encoder thread and builds the model on it; returns once
    /// the model is built, with `build`'s error if it failed.
    pub fn start_with<M: BatchModel>(
        build: impl FnOnce() -> Result<M, EncoderError> + Send + 'static,
        max_batch: usize,
        max_wait: Duration,
    ) -> Result<Batcher, EncoderError> {
        let (jobs, queue) = mpsc::sync_channel::<Vec<Job>>(QUEUE_DEPTH);
        let (built, outcome) = mpsc::sync_channel::<Result<(), EncoderError>>(1);
        std::thread::Builder::new()
            .name("switchyard-encoder".to_owned())
            .spawn(move || match build() {
                Ok(model) => {
                    // The caller may have stopped waiting; the thread then
                    // ends with the queue.
                    let _ = built.send(Ok(()));
                    run(&model, &queue, max_batch.max(1), max_wait);
                }
                Err(err) => {
                    let _ = built.send(Err(err));
                }
            })
            .map_err(|err| EncoderError::Thread(err.to_string()))?;
        outcome.recv().map_err(|_| EncoderError::Stopped)??;
        Ok(Batcher { jobs })
    }

    /// Queues sequences for encoding; jobs queued by other callers at the
    /// same moment may share their forward pass.
    pub fn submit(&self, sequences: Vec<Vec<u32>>) -> Result<Pending, EncoderError> {
        if sequences.is_empty() {
            return Ok(Pending(Vec::new()));
        }
        let mut replies = Vec::with_capacity(sequences.len());
        let mut group = Vec::with_capacity(sequences.len());
        for ids in sequences {
            let (reply, answer) = mpsc::sync_channel(1);
            group.push(Job { ids, reply });
            replies.push(answer);
        }
        self.jobs.send(group).map_err(|_| EncoderError::Stopped)?;
        Ok(Pending(replies))
    }
}

fn run(model: &impl BatchModel, queue: &Receiver<Vec<Job>>, max_batch: usize, max_wait: Duration) {
    // Jobs that arrive meanwhile wait in the queue.
    let started = Instant::now();
    match model.warm_up() {
        Ok(0) => {}
        Ok(shapes) => tracing::info!(shapes, seconds = started.elapsed().as_secs_f64(), "encoder warmed up"),
        // Not fatal: requests then pay for the compilation warm-up skipped.
        Err(err) => tracing::warn!(error = %err, "encoder warm-up failed"),
    }
    let mut pending: VecDeque<Job> = VecDeque::new();
    let mut busy = false;
    loop {
        if pending.is_empty() {
            match queue.recv() {
                Ok(group) => pending.extend(group),
                Err(_) => return,
            }
        }
        // Everything already queued joins this pass.
        while pending.len() < max_batch {
            match queue.try_recv() {
                Ok(group) => pending.extend(group),
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
            }
        }
        if busy {
            let deadline = Instant::now() + max_wait;
            while pending.len() < max_batch {
                let left = deadline.saturating_duration_since(Instant::now());
                match queue.recv_timeout(left) {
                    Ok(group) => pending.extend(group),
                    Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => break,
                }
            }
        }
        let take = pending.len().min(max_batch);
        let mut batch: Vec<Job> = pending.drain(..take).collect();
        busy = batch.len() > 1 || !pending.is_empty();
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

    #[test]
    fn a_lone_job_on_an_idle_encoder_does_not_wait_for_company() {
        let sizes = Arc::new(Mutex::new(Vec::new()));
        // A wait this long would stall the test if an idle batcher honoured it.
        let batcher = Batcher::start(Recorder(sizes.clone()), 8, Duration::from_secs(3600)).unwrap();
        for round in 1..=3 {
            let answers = batcher.submit(vec![vec![0; round]]).unwrap().wait().unwrap();
            assert_eq!(answers, vec![vec![round as f32]]);
        }
        assert_eq!(*sizes.lock().unwrap(), vec![1, 1, 1]);
    }

    #[test]
    fn a_busy_encoder_gathers_jobs_that_arrive_during_its_wait() {
        let sizes = Arc::new(Mutex::new(Vec::new()));
        let batcher = Batcher::start(Recorder(sizes.clone()), 4, Duration::from_secs(3600)).unwrap();
        // Five jobs at once: a pass of 4 leaves one queued, so the encoder
        // is busy and waits for company; the next job submitted joins it,
        // and a full batch needs no timeout to run.
        let first = batcher.submit((1..=5).map(|n| vec![0; n]).collect()).unwrap();
        let rest = batcher.submit((6..=8).map(|n| vec![0; n]).collect()).unwrap();
        assert_eq!(first.wait().unwrap().len(), 5);
        assert_eq!(rest.wait().unwrap().len(), 3);
        assert_eq!(*sizes.lock().unwrap(), vec![4, 4]);
    }

    #[test]
    fn an_empty_submission_is_answered_at_once() {
        let batcher = Batcher::start(Recorder(Arc::default()), 4, Duration::from_secs(3600)).unwrap();
        assert_eq!(batcher.submit(Vec::new()).unwrap().wait().unwrap(), Vec::<Vec<f32>>::new());
    }
}
