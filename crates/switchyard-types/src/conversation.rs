//! The text view of a chat that classifiers read.

use crate::chat::{ChatMessage, Role};

/// One message reduced to what a classifier can use: who said it and its text.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Turn {
    pub role: Role,
    pub text: String,
}

/// A conversation, oldest turn first. The last user turn is the one being
/// routed; earlier turns are context ("fix it", "do the same for London").
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Conversation {
    pub turns: Vec<Turn>,
}

impl Conversation {
    pub fn from_messages(messages: &[ChatMessage]) -> Conversation {
        Conversation {
            turns: messages
                .iter()
                .map(|message| Turn {
                    role: message.role,
                    text: message.text(),
                })
                .collect(),
        }
    }

    /// User turns, newest first: the routed message, then its context.
    pub fn user_turns_newest_first(&self) -> impl Iterator<Item = &Turn> {
        self.turns.iter().rev().filter(|turn| turn.role == Role::User)
    }

    /// The newest turn that is not a user turn and precedes the routed one:
    /// usually the assistant's question that the user is answering.
    pub fn last_assistant_turn(&self) -> Option<&Turn> {
        self.turns
            .iter()
            .rev()
            .find(|turn| turn.role == Role::Assistant)
    }
}
