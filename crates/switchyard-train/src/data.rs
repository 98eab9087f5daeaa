//! The training and dev cases: the shared datasets' `train` splits
//! (subsampled where large), our corpus' train split re-phrased and
//! augmented every epoch, and the dev splits for model selection and
//! reporting. `test` splits are never read here.

use std::collections::HashSet;
use std::path::Path;

use rand::rngs::StdRng;
use rand::seq::{IndexedRandom, SliceRandom};
use rand::{Rng, SeedableRng};
use switchyard_classifier::RouteSpec;
use switchyard_eval::corpus::Decision;
use switchyard_eval::{Case, Corpus, Split, read_cases};
use switchyard_types::OTHER_ROUTE;

use crate::TrainError;

/// How much of each shared dataset to use.
#[derive(Debug, Clone)]
pub struct Sizes {
    pub sgd: usize,
    pub clinc: usize,
    pub natinst: usize,
    pub dev_per_source: usize,
}

impl Default for Sizes {
    fn default() -> Self {
        Sizes {
            sgd: 6_000,
            clinc: 15_100,
            natinst: 5_000,
            dev_per_source: 1_500,
        }
    }
}

/// Chance that a corpus training case loses its expected route (and so
/// expects `other`): teaches that a fitting-looking set can lack the task.
const DROP_EXPECTED: f64 = 0.12;
/// Chance that a corpus training case gets distractor routes from other
/// domains.
const ADD_DISTRACTORS: f64 = 0.3;

/// Everything training reads.
#[derive(Debug)]
pub struct TrainingData {
    pub corpus: Corpus,
    /// Shared-dataset training cases (fixed for the run).
    pub shared_train: Vec<Case>,
    /// Our corpus' training decisions (assembled anew every epoch).
    pub corpus_train: Vec<Decision>,
    /// Dev sets for model selection: our in-distribution dev and the shared
    /// dev splits.
    pub dev_seen: Vec<Case>,
    pub shared_dev: Vec<Case>,
    /// Held-out route sets and domains: reported, never selected on.
    pub dev_unseen: Vec<Case>,
}

fn subsample(mut cases: Vec<Case>, n: usize, rng: &mut StdRng) -> Vec<Case> {
    if cases.len() > n {
        cases.shuffle(rng);
        cases.truncate(n);
    }
    cases
}

impl TrainingData {
    pub fn load(datasets: &Path, corpus_dir: &Path, sizes: &Sizes, seed: u64) -> Result<TrainingData, TrainError> {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut shared_train = Vec::new();
        let mut shared_dev = Vec::new();
        for (name, n) in [("sgd", sizes.sgd), ("clinc150", sizes.clinc), ("natinst", sizes.natinst)] {
            let train = read_cases(&datasets.join(name).join("train.jsonl"), None)?;
            shared_train.extend(subsample(train, n, &mut rng));
            let dev = read_cases(&datasets.join(name).join("dev.jsonl"), None)?;
            shared_dev.extend(subsample(dev, sizes.dev_per_source, &mut rng));
        }
        let corpus = Corpus::load(corpus_dir)?;
        let corpus_train = corpus.decisions_in(Split::Train);
        let dev_seen = corpus.cases(Split::DevSeen);
        let dev_unseen = corpus.cases(Split::DevUnseen);
        Ok(TrainingData {
            corpus,
            shared_train,
            corpus_train,
            dev_seen,
            shared_dev,
            dev_unseen,
        })
    }

    /// This epoch's training cases: the shared ones plus the corpus
    /// decisions with freshly drawn phrasings, order, dropped routes and
    /// distractors, shuffled.
    pub fn epoch_cases(&self, seed: u64, epoch: usize) -> Vec<Case> {
        let mut rng = StdRng::seed_from_u64(seed ^ (0x9e37_79b9_7f4a_7c15_u64.wrapping_mul(epoch as u64 + 1)));
        let train_sets = self.corpus.sets_in(Split::Train);
        let distractor_pool: Vec<(String, RouteSpec)> = self
            .corpus
            .sets
            .values()
            .filter(|set| train_sets.contains(set.id.as_str()))
            .flat_map(|set| {
                set.routes.iter().flat_map(move |route| {
                    route.descriptions.iter().map(move |description| {
                        (
                            set.domain.clone(),
                            RouteSpec {
                                name: route.name.clone(),
                                description: description.clone(),
                            },
                        )
                    })
                })
            })
            .collect();
        let mut cases = self.shared_train.clone();
        for decision in &self.corpus_train {
            let routes = self.corpus.sets.get(&decision.route_set).map_or(0, |set| set.routes.len());
            let picks: Vec<usize> = (0..routes).map(|_| rng.random_range(0..1024)).collect();
            let order: Vec<u64> = (0..routes).map(|_| rng.random()).collect();
            let Some(mut case) = self.corpus.case(
                decision,
                |i, _| picks.get(i).copied().unwrap_or(0),
                |i| order.get(i).copied().unwrap_or(0),
            ) else {
                continue;
            };
            if case.routes.len() >= 4 && !case.expects_other() && rng.random_bool(DROP_EXPECTED) {
                case.routes.retain(|route| route.name != case.expected);
                case.expected = OTHER_ROUTE.to_owned();
            }
            if rng.random_bool(ADD_DISTRACTORS) {
                let domain = case.source.trim_start_matches("corpus/").to_owned();
                let mut names: HashSet<String> = case.routes.iter().map(|r| r.name.clone()).collect();
                for _ in 0..rng.random_range(1..=3) {
                    let Some((from, route)) = distractor_pool.choose(&mut rng) else {
                        break;
                    };
                    if *from != domain && names.insert(route.name.clone()) {
                        let at = rng.random_range(0..=case.routes.len());
                        case.routes.insert(at, route.clone());
                    }
                }
            }
            cases.push(case);
        }
        cases.shuffle(&mut rng);
        cases
    }

    /// Every text any case of the run may need embedded: turns, system
    /// prompts, and every phrasing of every route.
    pub fn route_texts(&self) -> Vec<String> {
        let all_sets: HashSet<&str> = self.corpus.sets.keys().map(String::as_str).collect();
        let shared = self
            .shared_train
            .iter()
            .chain(&self.shared_dev)
            .chain(&self.dev_seen)
            .chain(&self.dev_unseen)
            .flat_map(|case| case.routes.iter().cloned());
        let mut texts: Vec<String> = shared
            .chain(self.corpus.phrasings(&all_sets))
            .map(|route| switchyard_classifier::embedding::route_text(&route))
            .collect();
        texts.sort_unstable();
        texts.dedup();
        texts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn corpus_only() -> TrainingData {
        let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../..")
            .join(switchyard_eval::corpus::DEFAULT_CORPUS_DIR);
        let corpus = Corpus::load(&dir).unwrap();
        let corpus_train = corpus.decisions_in(Split::Train);
        TrainingData {
            dev_seen: corpus.cases(Split::DevSeen),
            dev_unseen: corpus.cases(Split::DevUnseen),
            corpus,
            shared_train: Vec::new(),
            corpus_train,
            shared_dev: Vec::new(),
        }
    }

    #[test]
    fn epochs_are_seeded_valid_and_never_show_held_out_sets() {
        let data = corpus_only();
        let a = data.epoch_cases(17, 0);
        let again = data.epoch_cases(17, 0);
        let next = data.epoch_cases(17, 1);
        assert_eq!(a.len(), data.corpus_train.len());
        let ids = |cases: &[Case]| cases.iter().map(|c| (c.id.clone(), c.routes.clone())).collect::<Vec<_>>();
        assert_eq!(ids(&a), ids(&again), "same seed and epoch, same cases");
        assert_ne!(ids(&a), ids(&next), "each epoch is re-phrased and reshuffled");
        let unseen = data.corpus.sets_in(Split::DevUnseen);
        let mut others = 0;
        for case in &a {
            assert!(!unseen.contains(case.category.as_str()), "{} is held out", case.category);
            assert!(case.expects_other() || case.routes.iter().any(|r| r.name == case.expected));
            others += usize::from(case.expects_other());
        }
        // Dropped routes add `other` cases beyond the written negatives.
        let written = data.corpus_train.iter().filter(|d| d.expected == OTHER_ROUTE).count();
        assert!(others > written);
    }
}
