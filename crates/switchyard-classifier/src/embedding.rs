//! The `embedding` classifier: cosine between the conversation and each
//! route's "name: description", in the sentence encoder's space.
//!
//! A router in its own right, and the floor the learned MoE head must
//! beat. The context vector is the routed user turn blended with the turns
//! before it (within a token budget, newest first), so a follow-up such as
//! "do the same for London" leans on the turn it follows. `other` is
//! decided relative to the route set at hand: the best route must stand
//! out from the set's scores by a margin measured in the set's own spread,
//! because absolute cosines differ from one set of descriptions to another.

use std::sync::Arc;

use switchyard_encoder::{Embedding, Encoder, cosine};
use switchyard_types::Conversation;

use crate::context::{blend, blend_weight, blended_roles, recent_turns};
use crate::{Classification, Classifier, ClassifierError, RouteIndex, RouteSpec};

/// Default lead of the best route over the runner-up, in standard
/// deviations of the set's scores; tuned on the dev splits (README,
/// "Routing accuracy").
pub const DEFAULT_OTHER_THRESHOLD: f32 = 0.1;
/// Default token budget for the turns that make up the context.
pub const DEFAULT_CONTEXT_TOKENS: usize = 512;
/// Cosine classifier over the shared encoder.
#[derive(Debug, Clone)]
pub struct EmbeddingClassifier {
    encoder: Arc<Encoder>,
    other_threshold: f32,
    context_tokens: usize,
}

impl EmbeddingClassifier {
    pub fn new(encoder: Arc<Encoder>, other_threshold: f32, context_tokens: usize) -> Self {
        EmbeddingClassifier {
            encoder,
            other_threshold,
            context_tokens,
        }
    }
}

/// Each route's embedding, once per route set (refused when empty).
pub fn embed_routes(encoder: &Encoder, routes: &[RouteSpec]) -> Result<Vec<Embedding>, ClassifierError> {
    if routes.is_empty() {
        return Err(ClassifierError::NoRoutes);
    }
    let texts: Vec<String> = routes.iter().map(route_text).collect();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    Ok(encoder.embed(&refs)?)
}

/// The text a route is embedded from.
pub fn route_text(route: &RouteSpec) -> String {
    format!("{}: {}", route.name.replace(['_', '-'], " "), route.description)
}

impl Classifier for EmbeddingClassifier {
    fn name(&self) -> &'static str {
        "embedding"
    }

    fn prepare(&self, routes: &[RouteSpec]) -> Result<Arc<dyn RouteIndex>, ClassifierError> {
        let vectors = embed_routes(&self.encoder, routes)?;
        Ok(Arc::new(EmbeddingIndex {
            routes: routes.to_vec(),
            vectors,
            classifier: self.clone(),
        }))
    }
}

#[derive(Debug)]
struct EmbeddingIndex {
    routes: Vec<RouteSpec>,
    vectors: Vec<Embedding>,
    classifier: EmbeddingClassifier,
}

/// Route index of the best score if its lead over the runner-up is at
/// least `threshold` standard deviations of the set's scores; `None`
/// (other) otherwise. Measured in the set's own spread, the rule carries
/// over between route sets whose absolute cosines differ.
pub fn standout_route(scores: &[f32], threshold: f32) -> Option<usize> {
    let mut best: Option<(usize, f32)> = None;
    let mut second = f32::NEG_INFINITY;
    for (index, &score) in scores.iter().enumerate() {
        match best {
            Some((_, top)) if score <= top => second = second.max(score),
            Some((_, top)) => {
                second = top;
                best = Some((index, score));
            }
            None => best = Some((index, score)),
        }
    }
    let (best, top) = best?;
    if scores.len() < 2 {
        return Some(best);
    }
    let n = scores.len() as f32;
    let mean = scores.iter().sum::<f32>() / n;
    let spread = (scores.iter().map(|s| (s - mean).powi(2)).sum::<f32>() / n).sqrt();
    if spread <= f32::EPSILON {
        return None;
    }
    ((top - second) / spread >= threshold).then_some(best)
}

impl RouteIndex for EmbeddingIndex {
    fn routes(&self) -> &[RouteSpec] {
        &self.routes
    }

    fn classify(&self, conversation: &Conversation) -> Result<Classification, ClassifierError> {
        let encoder = &self.classifier.encoder;
        let turns = recent_turns(conversation, self.classifier.context_tokens, blended_roles, |text| {
            encoder.count_tokens(text)
        })?;
        if turns.is_empty() {
            return Ok(Classification {
                route: None,
                scores: vec![0.0; self.routes.len()],
            });
        }
        let texts: Vec<&str> = turns.iter().map(|turn| turn.text).collect();
        let vectors = encoder.embed(&texts)?;
        let context = blend(turns.iter().zip(&vectors).map(|(turn, v)| (blend_weight(turn), &v[..])));
        let scores: Vec<f32> = self.vectors.iter().map(|route| cosine(&context, route)).collect();
        Ok(Classification {
            route: standout_route(&scores, self.classifier.other_threshold),
            scores,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_best_route_must_lead_the_runner_up_by_the_sets_spread() {
        // One clear winner among similar scores.
        assert_eq!(standout_route(&[0.2, 0.21, 0.6, 0.19], 1.0), Some(2));
        // Two close leaders: no clear answer.
        assert_eq!(standout_route(&[0.2, 0.59, 0.6, 0.19], 0.5), None);
        // The same shape at another absolute level decides the same way.
        assert_eq!(standout_route(&[0.5, 0.51, 0.9, 0.49], 1.0), Some(2));
        assert_eq!(standout_route(&[0.5, 0.89, 0.9, 0.49], 0.5), None);
        assert_eq!(standout_route(&[], 1.0), None);
        assert_eq!(standout_route(&[0.3], 1.0), Some(0));
        assert_eq!(standout_route(&[0.3, 0.3], 0.5), None);
        assert_eq!(standout_route(&[0.1, 0.3], 0.5), Some(1));
    }
}
