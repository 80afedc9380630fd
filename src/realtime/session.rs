//! The Realtime session a call's route asks for: the GA `session.update` session object built
//! from a dialplan [`Route`].

use crate::dialplan::Route;
use crate::realtime::event::{AudioInput, AudioOutput, FunctionTool, SessionAudio, SessionConfig};

/// The `session` object of the `session.update` sent at the start of a call on `route`:
/// audio only, the route's model, instructions, voice and tools, and the route's audio format
/// in both directions. A route without turn detection sends `"turn_detection": null`.
pub fn session_config(route: &Route) -> SessionConfig {
    let format = route.audio_format.spec();
    SessionConfig {
        kind: "realtime".into(),
        model: Some(route.model.clone()),
        output_modalities: Some(vec!["audio".into()]),
        instructions: Some(route.instructions.clone()),
        audio: Some(SessionAudio {
            input: AudioInput {
                format,
                turn_detection: route.turn_detection.clone(),
                transcription: route.transcription.clone(),
            },
            output: AudioOutput {
                format,
                voice: Some(route.voice.clone()),
            },
        }),
        tools: Some(
            route
                .tools
                .iter()
                .map(|tool| FunctionTool {
                    kind: "function".into(),
                    name: tool.name.clone(),
                    description: tool.description.clone(),
                    parameters: tool.parameters.clone(),
                })
                .collect(),
        ),
        tool_choice: Some("auto".into()),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use serde_json::json;

    use super::*;
    use crate::dialplan::Dialplan;
    use crate::realtime::event::ClientEvent;

    fn route(toml: &str) -> Route {
        let plan = Dialplan::from_str(Path::new("test.toml"), toml).expect("valid dialplan");
        plan.routes.into_iter().next().expect("one route")
    }

    fn wire(route: &Route) -> serde_json::Value {
        let event = ClientEvent::SessionUpdate {
            session: Box::new(session_config(route)),
        };
        serde_json::to_value(&event).expect("serializes")
    }

    #[test]
    fn full_route_gives_the_ga_session_object() {
        let route = route(
            r#"
            [[route]]
            name = "sales"
            match = { prefix = "+1415" }
            model = "gpt-realtime-mini"
            voice = "cedar"
            instructions = "Be brief."
            audio_format = "pcmu"

            [route.turn_detection]
            type = "server_vad"
            threshold = 0.6
            silence_duration_ms = 700

            [route.transcription]
            model = "gpt-4o-mini-transcribe"
            language = "en"

            [[route.tools]]
            name = "end_call"
            description = "End the call."
            action = { type = "hangup" }

            [[route.tools]]
            name = "transfer_call"
            description = "Transfer the caller."
            parameters = { type = "object", properties = { target = { type = "string" } }, required = ["target"] }
            action = { type = "transfer", target_arg = "target" }
            "#,
        );
        let expected = json!({
            "type": "session.update",
            "session": {
                "type": "realtime",
                "model": "gpt-realtime-mini",
                "output_modalities": ["audio"],
                "instructions": "Be brief.",
                "audio": {
                    "input": {
                        "format": { "type": "audio/pcmu" },
                        "turn_detection": {
                            "type": "server_vad",
                            "threshold": 0.6,
                            "prefix_padding_ms": 300,
                            "silence_duration_ms": 700,
                            "create_response": true,
                            "interrupt_response": true
                        },
                        "transcription": { "model": "gpt-4o-mini-transcribe", "language": "en" }
                    },
                    "output": { "format": { "type": "audio/pcmu" }, "voice": "cedar" }
                },
                "tools": [
                    {
                        "type": "function",
                        "name": "end_call",
                        "description": "End the call.",
                        "parameters": { "type": "object", "properties": {} }
                    },
                    {
                        "type": "function",
                        "name": "transfer_call",
                        "description": "Transfer the caller.",
                        "parameters": {
                            "type": "object",
                            "properties": { "target": { "type": "string" } },
                            "required": ["target"]
                        }
                    }
                ],
                "tool_choice": "auto"
            }
        });
        assert_eq!(wire(&route), expected);
    }

    #[test]
    fn disabled_turn_detection_is_null_and_defaults_apply() {
        let route = route(
            r#"
            [[route]]
            name = "manual"
            match = { default = true }
            audio_format = "pcm16"
            turn_detection = { type = "none" }
            "#,
        );
        let value = wire(&route);
        let session = &value["session"];
        let keys: Vec<&str> = session
            .as_object()
            .expect("object")
            .keys()
            .map(String::as_str)
            .collect();
        let mut sorted = keys.clone();
        sorted.sort_unstable();
        assert_eq!(
            sorted,
            [
                "audio",
                "instructions",
                "model",
                "output_modalities",
                "tool_choice",
                "tools",
                "type"
            ]
        );
        assert_eq!(
            session["audio"],
            json!({
                "input": {
                    "format": { "type": "audio/pcm", "rate": 24000 },
                    "turn_detection": null
                },
                "output": { "format": { "type": "audio/pcm", "rate": 24000 }, "voice": "marin" }
            })
        );
        assert_eq!(session["model"], "gpt-realtime");
        assert_eq!(session["tools"], json!([]));
        assert_eq!(
            session["instructions"],
            crate::dialplan::DEFAULT_INSTRUCTIONS
        );
    }

    #[test]
    fn semantic_vad_and_pcma() {
        let route = route(
            r#"
            [[route]]
            name = "eu"
            match = { pattern = "\\+49\\d+" }
            audio_format = "pcma"
            turn_detection = { type = "semantic_vad", eagerness = "low" }
            "#,
        );
        let value = wire(&route);
        assert_eq!(
            value["session"]["audio"]["input"],
            json!({
                "format": { "type": "audio/pcma" },
                "turn_detection": {
                    "type": "semantic_vad",
                    "eagerness": "low",
                    "create_response": true,
                    "interrupt_response": true
                }
            })
        );
        assert_eq!(
            value["session"]["audio"]["output"]["format"],
            json!({ "type": "audio/pcma" })
        );
    }
}
