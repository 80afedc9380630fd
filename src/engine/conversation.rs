//! The conversation of one engine session: its items in order (never with audio bytes), how
//! much audio each assistant message has generated (for `conversation.item.truncate`), and the
//! function calls made (for `function_call_output`).

use std::collections::HashSet;

use serde_json::{Value, json};

use super::error::RequestError;
use crate::realtime::event::ServerItem;

/// What an item is, as far as the engine's checks go.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum ItemKind {
    /// An assistant message carrying audio, with the milliseconds generated so far.
    AssistantAudio { generated_ms: u64 },
    /// A function call the engine made.
    FunctionCall,
    /// A tool result; `output` is not part of [`ServerItem`], so it is kept here.
    FunctionCallOutput { output: String },
    /// Any other message (user audio or text, system text, assistant text).
    Message,
}

#[derive(Debug, Clone)]
struct Entry {
    item: ServerItem,
    kind: ItemKind,
}

/// The ordered items and the function calls made.
#[derive(Debug, Default)]
pub(crate) struct Conversation {
    items: Vec<Entry>,
    calls: HashSet<String>,
}

impl Conversation {
    /// Appends `item`; returns the id of the item before it (`previous_item_id`).
    pub(crate) fn push(&mut self, item: ServerItem, kind: ItemKind) -> Option<String> {
        let previous = self.items.last().map(|e| e.item.id.clone());
        if kind == ItemKind::FunctionCall {
            if let Some(call_id) = &item.call_id {
                self.calls.insert(call_id.clone());
            }
        }
        self.items.push(Entry { item, kind });
        previous
    }

    /// Whether an item with `id` exists.
    pub(crate) fn contains(&self, id: &str) -> bool {
        self.find(id).is_some()
    }

    /// Whether the engine made a function call with `call_id`.
    pub(crate) fn has_call(&self, call_id: &str) -> bool {
        self.calls.contains(call_id)
    }

    /// Replaces the stored item with the same id (e.g. once it is complete).
    pub(crate) fn update(&mut self, item: &ServerItem) {
        if let Some(i) = self.find(&item.id) {
            self.items[i].item = item.clone();
        }
    }

    /// Records how much audio an assistant message has generated.
    pub(crate) fn set_generated(&mut self, id: &str, ms: u64) {
        if let Some(i) = self.find(id) {
            if let ItemKind::AssistantAudio { generated_ms } = &mut self.items[i].kind {
                *generated_ms = ms;
            }
        }
    }

    /// Removes the item `id` (`conversation.item.delete`).
    pub(crate) fn delete(&mut self, id: &str) -> Result<(), RequestError> {
        let i = self
            .find(id)
            .ok_or_else(|| RequestError::ItemNotFound(id.to_owned()))?;
        self.items.remove(i);
        Ok(())
    }

    /// The wire form of item `id` (`conversation.item.retrieve`).
    pub(crate) fn get(&self, id: &str) -> Result<Value, RequestError> {
        let i = self
            .find(id)
            .ok_or_else(|| RequestError::ItemNotFound(id.to_owned()))?;
        Ok(self.wire(i))
    }

    /// The wire form of item `id` as stored, if it exists.
    pub(crate) fn wire_item(&self, id: &str) -> Option<Value> {
        self.find(id).map(|i| self.wire(i))
    }

    /// Applies `conversation.item.truncate`: checks it exactly as the real service does, then
    /// cuts the item's audio to `audio_end_ms` and deletes its transcript.
    pub(crate) fn truncate(
        &mut self,
        id: &str,
        content_index: u32,
        audio_end_ms: u64,
    ) -> Result<(), RequestError> {
        let i = self
            .find(id)
            .ok_or_else(|| RequestError::ItemNotFound(id.to_owned()))?;
        let entry = &mut self.items[i];
        let ItemKind::AssistantAudio { generated_ms } = &mut entry.kind else {
            return Err(RequestError::NotTruncatable);
        };
        if content_index != 0 {
            return Err(RequestError::InvalidValue {
                param: "content_index".to_owned(),
                detail: "the item has a single content part, at index 0".to_owned(),
            });
        }
        if audio_end_ms > *generated_ms {
            return Err(RequestError::AudioTooShort {
                generated_ms: *generated_ms,
                audio_end_ms,
            });
        }
        *generated_ms = audio_end_ms;
        for part in &mut entry.item.content {
            if let Some(transcript) = part.get_mut("transcript") {
                *transcript = Value::from("");
            }
        }
        Ok(())
    }

    fn find(&self, id: &str) -> Option<usize> {
        self.items.iter().rposition(|e| e.item.id == id)
    }

    fn wire(&self, i: usize) -> Value {
        let entry = &self.items[i];
        let mut value = wire_item(&entry.item);
        if let (ItemKind::FunctionCallOutput { output }, Value::Object(map)) =
            (&entry.kind, &mut value)
        {
            map.insert("output".to_owned(), Value::from(output.as_str()));
        }
        value
    }
}

/// An item as sent on the wire: the [`ServerItem`] fields plus `object: "realtime.item"`.
pub(crate) fn wire_item(item: &ServerItem) -> Value {
    let mut value = serde_json::to_value(item).unwrap_or_else(|_| json!({}));
    if let Value::Object(map) = &mut value {
        map.insert("object".to_owned(), Value::from("realtime.item"));
        if item.kind == "message" {
            map.entry("content").or_insert_with(|| json!([]));
        }
    }
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assistant(id: &str) -> ServerItem {
        ServerItem {
            id: id.into(),
            kind: "message".into(),
            role: Some("assistant".into()),
            status: Some("completed".into()),
            content: vec![json!({"type": "output_audio", "transcript": "(echo)"})],
            ..ServerItem::default()
        }
    }

    #[test]
    fn truncate_checks_like_the_service() {
        let mut conv = Conversation::default();
        let user = ServerItem {
            id: "item_u".into(),
            kind: "message".into(),
            role: Some("user".into()),
            ..ServerItem::default()
        };
        assert_eq!(conv.push(user, ItemKind::Message), None);
        assert_eq!(
            conv.push(
                assistant("item_a"),
                ItemKind::AssistantAudio { generated_ms: 0 }
            ),
            Some("item_u".into())
        );
        conv.set_generated("item_a", 2700);

        let err = conv.truncate("item_x", 0, 10).unwrap_err();
        assert_eq!(err.code(), "item_not_found");
        let err = conv.truncate("item_u", 0, 10).unwrap_err();
        assert_eq!(
            err.to_string(),
            "Only model output audio messages can be truncated"
        );
        let err = conv.truncate("item_a", 0, 3207).unwrap_err();
        assert_eq!(
            err.to_string(),
            "Audio content of 2700ms is already shorter than 3207ms"
        );
        assert_eq!(err.detail(None).kind, "invalid_request_error");
        conv.truncate("item_a", 0, 1500).unwrap();
        assert_eq!(conv.get("item_a").unwrap()["content"][0]["transcript"], "");
        let err = conv.truncate("item_a", 0, 1600).unwrap_err();
        assert_eq!(
            err.to_string(),
            "Audio content of 1500ms is already shorter than 1600ms"
        );
        conv.truncate("item_a", 0, 1500).unwrap();
    }

    #[test]
    fn calls_and_outputs() {
        let mut conv = Conversation::default();
        let call = ServerItem {
            id: "item_c".into(),
            kind: "function_call".into(),
            call_id: Some("call_1".into()),
            ..ServerItem::default()
        };
        conv.push(call, ItemKind::FunctionCall);
        assert!(conv.has_call("call_1"));
        assert!(!conv.has_call("call_2"));
        let out = ServerItem {
            id: "item_o".into(),
            kind: "function_call_output".into(),
            call_id: Some("call_1".into()),
            ..ServerItem::default()
        };
        conv.push(
            out,
            ItemKind::FunctionCallOutput {
                output: "{}".into(),
            },
        );
        let wire = conv.get("item_o").unwrap();
        assert_eq!(wire["output"], "{}");
        assert_eq!(wire["object"], "realtime.item");
        conv.delete("item_o").unwrap();
        assert!(!conv.contains("item_o"));
        assert!(conv.delete("item_o").is_err());
    }
}
