//! Which turns of a conversation a classifier reads, and how the
//! `embedding` classifier blends them into one context vector.
//!
//! Shared by the `embedding` classifier (whose blend is also the MoE head's
//! similarity prior) and the MoE head's turn slots, so training and
//! serving read conversations the same way.

use switchyard_encoder::{EncoderError, HIDDEN, recent_turns_within};
use switchyard_types::{Conversation, Role};

/// Weight of the routed user turn in the context vector.
const ROUTED_TURN_WEIGHT: f32 = 1.0;
/// Each earlier turn weighs this much of the one after it. Slow decay
/// (tuned on SGD dev: 0.5 → 63%, 0.8 → 74%) because follow-ups rarely
/// carry their topic themselves.
const DECAY: f32 = 0.8;
/// Assistant turns count at this fraction of a user turn at the same place.
const ASSISTANT_WEIGHT: f32 = 0.25;

/// A turn picked for the context.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ContextTurn<'a> {
    pub text: &'a str,
    pub role: Role,
    /// 0 for the routed turn, 1 for the turn before it, and so on.
    pub distance: usize,
}

/// The routed user turn and the turns before it whose roles `include`
/// accepts, newest first, as many as fit `budget` tokens. Empty turns are
/// skipped; `count` is asked only as far as the budget reaches.
pub fn recent_turns<'a>(
    conversation: &'a Conversation,
    budget: usize,
    include: impl Fn(Role) -> bool,
    mut count: impl FnMut(&str) -> Result<usize, EncoderError>,
) -> Result<Vec<ContextTurn<'a>>, EncoderError> {
    let Some(last_user) = conversation.turns.iter().rposition(|t| t.role == Role::User) else {
        return Ok(Vec::new());
    };
    let candidates: Vec<(&str, Role)> = conversation.turns[..=last_user]
        .iter()
        .filter(|turn| include(turn.role) && !turn.text.trim().is_empty())
        .map(|turn| (turn.text.as_str(), turn.role))
        .collect();
    let mut failure = None;
    let counts = candidates.iter().rev().map(|(text, _)| {
        count(text).unwrap_or_else(|err| {
            failure = Some(err);
            usize::MAX
        })
    });
    let kept = recent_turns_within(counts, budget);
    if let Some(err) = failure {
        return Err(err);
    }
    Ok(candidates
        .iter()
        .rev()
        .take(kept)
        .enumerate()
        .map(|(distance, &(text, role))| ContextTurn { text, role, distance })
        .collect())
}

/// The turns the `embedding` classifier blends: user and assistant turns.
/// System prompts describe the assistant, not the request.
pub fn blended_roles(role: Role) -> bool {
    matches!(role, Role::User | Role::Assistant)
}

/// A turn's weight in the context vector.
pub fn blend_weight(turn: &ContextTurn<'_>) -> f32 {
    let mut weight = ROUTED_TURN_WEIGHT * DECAY.powi(turn.distance as i32);
    if turn.role == Role::Assistant {
        weight *= ASSISTANT_WEIGHT;
    }
    weight
}

/// The weighted sum of the turns' vectors, L2-normalised.
pub fn blend<'v>(weighted: impl IntoIterator<Item = (f32, &'v [f32])>) -> Vec<f32> {
    let mut context = vec![0.0_f32; HIDDEN];
    for (weight, vector) in weighted {
        for (sum, value) in context.iter_mut().zip(vector) {
            *sum += weight * value;
        }
    }
    let norm = context.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
    context.iter_mut().for_each(|v| *v /= norm);
    context
}

/// The conversation's first system (or developer) prompt.
pub fn system_prompt(conversation: &Conversation) -> Option<&str> {
    conversation
        .turns
        .iter()
        .find(|turn| matches!(turn.role, Role::System | Role::Developer) && !turn.text.trim().is_empty())
        .map(|turn| turn.text.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::conversation;


    fn words(text: &str) -> Result<usize, EncoderError> {
        Ok(text.split_whitespace().count())
    }

    #[test]
    fn turns_are_newest_first_from_the_last_user_turn_within_the_budget() {
        let chat = conversation(&[
            (Role::System, "you are a helpful assistant"),
            (Role::User, "one two three"),
            (Role::Assistant, "four five"),
            (Role::User, "six"),
            (Role::Assistant, "trailing answer is not context"),
        ]);
        let turns = recent_turns(&chat, 3, blended_roles, words).unwrap();
        let texts: Vec<&str> = turns.iter().map(|t| t.text).collect();
        assert_eq!(texts, ["six", "four five"]);
        assert_eq!(turns[1].distance, 1);
        let all = recent_turns(&chat, 100, blended_roles, words).unwrap();
        assert_eq!(all.len(), 3);
        assert_eq!(system_prompt(&chat), Some("you are a helpful assistant"));
    }

    #[test]
    fn weights_decay_with_distance_and_assistants_count_less() {
        let user = ContextTurn { text: "", role: Role::User, distance: 0 };
        let older = ContextTurn { distance: 2, ..user };
        let assistant = ContextTurn { role: Role::Assistant, distance: 1, ..user };
        assert!(blend_weight(&user) > blend_weight(&older));
        assert!(blend_weight(&assistant) < blend_weight(&ContextTurn { distance: 1, ..user }));
    }

    #[test]
    fn a_conversation_without_a_user_turn_has_no_context() {
        let chat = conversation(&[(Role::System, "rules")]);
        assert!(recent_turns(&chat, 100, blended_roles, words).unwrap().is_empty());
    }
}
