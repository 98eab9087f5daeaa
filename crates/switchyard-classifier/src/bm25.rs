//! The lexical baseline: BM25 between a conversation and each task's name
//! and description.
//!
//! It is the router's first classifier and stays as the yardstick the
//! learned classifiers must beat (`switchyard eval --classifier bm25`). Its
//! limits are those of word overlap: synonyms, paraphrase and non-English
//! text defeat it.
//!
//! Multi-turn context: the routed user message counts fully, earlier user
//! turns and the assistant's last turn count with decaying weights, so a
//! follow-up with no topic words of its own ("fix it", "and for London?")
//! inherits the topic of the turns before it.

use std::sync::Arc;

use bm25::{Embedder, EmbedderBuilder, Language, Scorer};
use switchyard_types::Conversation;

use crate::{Classification, Classifier, ClassifierError, RouteIndex, RouteSpec};

/// Default score below which the answer is `other`; tuned on the dev splits
/// of the shared datasets (README, "Routing accuracy").
pub const DEFAULT_OTHER_THRESHOLD: f32 = 0.5;

/// Weights of the routed user turn and the user turns before it, newest first.
const USER_TURN_WEIGHTS: [f32; 3] = [1.0, 0.5, 0.25];
/// Weight of the assistant's last turn, which often names the topic the
/// user is answering ("Which city should I search restaurants in?").
const ASSISTANT_TURN_WEIGHT: f32 = 0.25;

/// BM25 over task names and descriptions, with a score threshold for `other`.
#[derive(Debug, Clone)]
pub struct Bm25Classifier {
    other_threshold: f32,
}

impl Bm25Classifier {
    pub fn new(other_threshold: f32) -> Bm25Classifier {
        Bm25Classifier { other_threshold }
    }
}

impl Classifier for Bm25Classifier {
    fn name(&self) -> &'static str {
        "lexical"
    }

    fn prepare(&self, routes: &[RouteSpec]) -> Result<Arc<dyn RouteIndex>, ClassifierError> {
        if routes.is_empty() {
            return Err(ClassifierError::NoRoutes);
        }
        let documents: Vec<String> = routes.iter().map(route_document).collect();
        let corpus: Vec<&str> = documents.iter().map(String::as_str).collect();
        let embedder: Embedder = EmbedderBuilder::with_fit_to_corpus(Language::English, &corpus).build();
        let mut scorer = Scorer::new();
        for (index, document) in documents.iter().enumerate() {
            scorer.upsert(&index, embedder.embed(document));
        }
        Ok(Arc::new(Bm25Index {
            routes: routes.to_vec(),
            embedder,
            scorer,
            other_threshold: self.other_threshold,
        }))
    }
}

/// The text BM25 indexes for a route: its name in words, then its description.
fn route_document(route: &RouteSpec) -> String {
    format!("{}. {}", route.name.replace(['_', '-'], " "), route.description)
}

struct Bm25Index {
    routes: Vec<RouteSpec>,
    embedder: Embedder,
    scorer: Scorer<usize>,
    other_threshold: f32,
}

impl std::fmt::Debug for Bm25Index {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bm25Index")
            .field("routes", &self.routes.len())
            .field("other_threshold", &self.other_threshold)
            .finish()
    }
}

impl Bm25Index {
    fn add_scores(&self, text: &str, weight: f32, scores: &mut [f32]) {
        if text.trim().is_empty() {
            return;
        }
        let query = self.embedder.embed(text);
        for matched in self.scorer.matches(&query) {
            if let Some(score) = scores.get_mut(matched.id) {
                *score += weight * matched.score;
            }
        }
    }
}

impl RouteIndex for Bm25Index {
    fn routes(&self) -> &[RouteSpec] {
        &self.routes
    }

    fn classify(&self, conversation: &Conversation) -> Result<Classification, ClassifierError> {
        let mut scores = vec![0.0_f32; self.routes.len()];
        for (turn, weight) in conversation
            .user_turns_newest_first()
            .zip(USER_TURN_WEIGHTS)
        {
            self.add_scores(&turn.text, weight, &mut scores);
        }
        if let Some(turn) = conversation.last_assistant_turn() {
            self.add_scores(&turn.text, ASSISTANT_TURN_WEIGHT, &mut scores);
        }
        Ok(Classification {
            route: best_route(&scores, self.other_threshold),
            scores,
        })
    }
}

/// The highest-scoring route if it reaches the threshold; the first declared
/// route wins ties, so decisions are deterministic.
pub fn best_route(scores: &[f32], threshold: f32) -> Option<usize> {
    let mut best: Option<(usize, f32)> = None;
    for (index, &score) in scores.iter().enumerate() {
        if best.is_none_or(|(_, top)| score > top) {
            best = Some((index, score));
        }
    }
    best.filter(|&(_, score)| score >= threshold && score > 0.0)
        .map(|(index, _)| index)
}

#[cfg(test)]
mod tests {
    use switchyard_types::Role;

    use crate::test_support::conversation;

    use super::*;

    fn routes() -> Vec<RouteSpec> {
        [
            ("find_restaurants", "Find restaurants by location and by category"),
            ("reserve_restaurant", "Make a table reservation at a restaurant"),
            ("play_song", "Play the selected song on the device"),
            ("book_flight", "Book a flight ticket between two airports"),
        ]
        .into_iter()
        .map(|(name, description)| RouteSpec {
            name: name.to_owned(),
            description: description.to_owned(),
        })
        .collect()
    }


    fn classify(turns: &[(Role, &str)]) -> Option<String> {
        let index = Bm25Classifier::new(1.0).prepare(&routes()).unwrap();
        let result = index.classify(&conversation(turns)).unwrap();
        result.route.map(|i| index.routes()[i].name.clone())
    }

    #[test]
    fn picks_the_task_whose_words_match() {
        assert_eq!(
            classify(&[(Role::User, "Please play a song by Adele")]).as_deref(),
            Some("play_song")
        );
        assert_eq!(
            classify(&[(Role::User, "I need a flight to Boston tomorrow")]).as_deref(),
            Some("book_flight")
        );
    }

    #[test]
    fn follow_up_inherits_the_topic_of_earlier_turns() {
        let turns = [
            (Role::User, "I want to book a flight to Paris"),
            (Role::Assistant, "Sure, when do you want to leave?"),
            (Role::User, "next Friday, in the morning"),
        ];
        assert_eq!(classify(&turns).as_deref(), Some("book_flight"));
    }

    #[test]
    fn unrelated_text_is_other() {
        assert_eq!(classify(&[(Role::User, "what's the weather like?")]), None);
    }

    #[test]
    fn ties_go_to_the_first_route_and_zero_is_never_a_match() {
        assert_eq!(best_route(&[1.5, 1.5, 0.2], 1.0), Some(0));
        assert_eq!(best_route(&[0.0, 0.0], 0.0), None);
        assert_eq!(best_route(&[], 0.0), None);
    }
}
