//! Dialplan files: the shipped ones load, routes are chosen in the documented order, and
//! mistakes are reported with their file, line and field.

use std::path::{Path, PathBuf};
use std::time::Duration;

use dialtone::audio::AudioFormat;
use dialtone::dialplan::*;

fn shipped(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

/// A fresh directory under the system temp dir, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let path =
            std::env::temp_dir().join(format!("dialtone-dialplans-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create temp dir");
        Self(path)
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, text).expect("write temp file");
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn toml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("read dir")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    files
}

fn load_one(text: &str) -> Result<Dialplan, DialplanError> {
    Dialplan::from_str(Path::new("dialplans/test.toml"), text)
}

fn problems(text: &str) -> Vec<Problem> {
    match load_one(text) {
        Ok(_) => panic!("expected errors in:\n{text}"),
        Err(e) => {
            let problems = e.problems().to_vec();
            assert!(!problems.is_empty(), "expected problems, got: {e}");
            problems
        }
    }
}

// --- Shipped files ---------------------------------------------------------------------------

#[test]
fn shipped_directories_and_files_load() {
    let main = Dialplan::load_dir(&shipped("dialplans")).expect("dialplans/ loads");
    assert_eq!(main.routes.len(), 1);

    let examples = Dialplan::load_dir(&shipped("dialplans/examples")).expect("examples load");
    assert!(examples.routes.len() >= 5);
    assert!(examples.default_route().is_none());

    for file in toml_files(&shipped("dialplans"))
        .into_iter()
        .chain(toml_files(&shipped("dialplans/examples")))
    {
        let text = std::fs::read_to_string(&file).expect("read");
        if let Err(e) = Dialplan::from_str(&file, &text) {
            panic!("{} does not load on its own:\n{e}", file.display());
        }
    }
}

#[test]
fn shipped_files_load_together() {
    let dir = TempDir::new("together");
    for file in toml_files(&shipped("dialplans"))
        .into_iter()
        .chain(toml_files(&shipped("dialplans/examples")))
    {
        let name = file.file_name().expect("file name").to_string_lossy();
        let text = std::fs::read_to_string(&file).expect("read");
        dir.write(&name, &text);
    }
    let plan = Dialplan::load_dir(&dir.0).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        plan.default_route().map(|r| r.name.as_str()),
        Some("default")
    );
    assert_eq!(plan.route_for("+14155550199").unwrap().name, "order-status");
    assert_eq!(plan.route_for("+14155559999").unwrap().name, "sales");
    assert_eq!(plan.route_for("+442071234567").unwrap().name, "uk-cities");
    assert_eq!(plan.route_for("+49301234567").unwrap().name, "berlin");
    assert_eq!(plan.route_for("+12125550100").unwrap().name, "default");
}

#[test]
fn default_route_has_the_tools_the_bridge_relies_on() {
    let plan = Dialplan::load_dir(&shipped("dialplans")).expect("loads");
    let route = plan.route_for("+15550000000").expect("default route");
    assert_eq!(route.name, "default");
    assert!(matches!(route.number, NumberMatch::Default));
    assert_eq!(route.audio_format, AudioFormat::Pcmu);
    assert_eq!(route.model, "gpt-realtime");
    assert!(route.greeting.is_some());
    assert!(route.dtmf.to_model);
    assert_eq!(route.limits.max_duration, Duration::from_secs(3600));
    assert_eq!(route.limits.caller_silence, None);
    assert_eq!(route.tool("end_call").unwrap().action, Action::Hangup);
    let transfer = route.tool("transfer_call").unwrap();
    assert_eq!(
        transfer.action,
        Action::Transfer {
            target: ValueSource::Argument("target".into())
        }
    );
    assert_eq!(
        transfer.parameters["properties"]["target"]["type"],
        "string"
    );
}

#[test]
fn examples_have_the_features_they_show() {
    let plan = Dialplan::load_dir(&shipped("dialplans/examples")).expect("loads");
    let front = plan.route_named("front-desk").unwrap();
    assert_eq!(front.dtmf.binding('0'), Some("operator"));
    assert_eq!(front.dtmf.binding('#'), Some("end_call"));
    assert_eq!(
        front.tool("dial_extension").unwrap().action,
        Action::Dtmf {
            digits: ValueSource::Argument("digits".into())
        }
    );
    let webhook = plan.route_named("order-status").unwrap();
    match &webhook.tool("lookup_order").unwrap().action {
        Action::Webhook {
            url,
            timeout,
            headers,
        } => {
            assert_eq!(url, "https://orders.example.com/hooks/status");
            assert_eq!(*timeout, Duration::from_millis(3000));
            assert_eq!(headers[0].0, "Authorization");
        }
        other => panic!("unexpected action {other:?}"),
    }
    let berlin = plan.route_named("berlin").unwrap();
    assert_eq!(berlin.audio_format, AudioFormat::Pcm16);
    assert!(matches!(
        berlin.turn_detection,
        Some(dialtone::realtime::event::TurnDetection::SemanticVad { .. })
    ));
    let uk = plan.route_named("uk-cities").unwrap();
    assert_eq!(uk.limits.caller_silence, Some(Duration::from_secs(30)));
}

#[test]
fn check_summarises_a_directory() {
    let summary = check(&shipped("dialplans")).expect("valid");
    assert_eq!(summary.route_count(), 1);
    assert_eq!(summary.default_route(), Some("default"));
    let text = summary.to_string();
    assert!(text.contains("1 file, 1 route"), "{text}");
    assert!(
        text.contains("end_call (hangup), transfer_call (transfer)"),
        "{text}"
    );

    let examples = check(&shipped("dialplans/examples")).expect("valid");
    let text = examples.to_string();
    println!("{summary}\n{text}");
    assert!(text.contains("no default route"), "{text}");
    assert!(text.contains("keys: #=end_call, 0=operator"), "{text}");
    assert!(text.contains(r"pattern '\+44(20|161)\d{7,8}'"), "{text}");
}

// --- Matching --------------------------------------------------------------------------------

const ROUTING: &str = r#"
[[route]]
name = "fallback"
match = { default = true }

[[route]]
name = "uk"
match = { pattern = '\+44\d+' }

[[route]]
name = "any-1"
match = { pattern = '\+1\d+' }

[[route]]
name = "sf"
match = { prefix = "+1415" }

[[route]]
name = "sf-555"
match = { prefix = "+1415555" }

[[route]]
name = "reception"
match = { exact = "+14155550100" }

[[route]]
name = "sales-user"
match = { exact = "sales" }
"#;

#[test]
fn exact_beats_longest_prefix_beats_pattern_beats_default() {
    let plan = load_one(ROUTING).unwrap_or_else(|e| panic!("{e}"));
    let route = |called: &str| plan.route_for(called).map(|r| r.name.as_str());
    assert_eq!(route("+14155550100"), Some("reception"));
    assert_eq!(route("+14155550101"), Some("sf-555"));
    assert_eq!(route("+14156660101"), Some("sf"));
    assert_eq!(route("+12125550100"), Some("any-1"));
    assert_eq!(route("+442071234567"), Some("uk"));
    // Patterns are anchored: a trailing letter does not match `\+44\d+`.
    assert_eq!(route("+442071234567x"), Some("fallback"));
    assert_eq!(route("+33123456789"), Some("fallback"));
    assert_eq!(plan.route_named("sf").map(|r| r.name.as_str()), Some("sf"));
    assert!(plan.route_named("nope").is_none());
}

#[test]
fn called_uris_are_normalised() {
    let plan = load_one(ROUTING).unwrap_or_else(|e| panic!("{e}"));
    let route = |called: &str| plan.route_for(called).map(|r| r.name.as_str());
    assert_eq!(
        route("sip:+14155550100@trunk.example.com;user=phone"),
        Some("reception")
    );
    assert_eq!(
        route("sips:+14155550100@trunk.example.com:5061"),
        Some("reception")
    );
    assert_eq!(
        route("tel:+1-415-555-0100;phone-context=example.com"),
        Some("reception")
    );
    assert_eq!(route("<sip:+14155550100@10.0.0.1>"), Some("reception"));
    assert_eq!(route("SIP:sales@pbx.example.com"), Some("sales-user"));
    assert_eq!(normalize_number("+1 (415) 555-0100"), "+14155550100");
    assert_eq!(normalize_number("sip:alice@example.com"), "alice");
}

#[test]
fn without_a_default_unmatched_calls_have_no_route() {
    let plan = load_one(
        r#"
        [[route]]
        name = "only"
        match = { exact = "+15550001" }
        "#,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(plan.route_for("+15550001").is_some());
    assert!(plan.route_for("+15550002").is_none());
    assert!(plan.default_route().is_none());
}

#[test]
fn defaults_are_filled_in() {
    let plan = load_one(
        r#"
        [[route]]
        name = "bare"
        match = { default = true }
        "#,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let route = &plan.routes[0];
    assert_eq!(route.model, DEFAULT_MODEL);
    assert_eq!(route.voice, DEFAULT_VOICE);
    assert_eq!(route.instructions, DEFAULT_INSTRUCTIONS);
    assert_eq!(route.audio_format, AudioFormat::Pcmu);
    assert!(route.turn_detection.is_some());
    assert!(route.transcription.is_none());
    assert!(route.greeting.is_none());
    assert_eq!(route.limits, Limits::default());
    assert!(route.tools.is_empty());
    assert!(route.dtmf.to_model);
    assert!(route.dtmf.bindings.is_empty());
}

// --- Errors ----------------------------------------------------------------------------------

/// One broken snippet: the problem expected first, as (line, route, field, message part).
struct Broken {
    text: &'static str,
    line: usize,
    route: Option<&'static str>,
    field: &'static str,
    message: &'static str,
}

const BROKEN: &[Broken] = &[
    Broken {
        text: "[[route]]\nname = \"a\"\nmatch = { default = true }\nvoice = \"marin\"\ncolour = \"red\"\n",
        line: 5,
        route: Some("a"),
        field: "colour",
        message: "unknown field `colour`",
    },
    Broken {
        text: "[[route]]\nmatch = { default = true }\n",
        line: 1,
        route: None,
        field: "route[0].name",
        message: "missing field `name`",
    },
    Broken {
        text: "[[route]]\nname = \"a\"\nmatch = { default = true }\n\n[route.limits]\nmax_duration_s = \"long\"\n",
        line: 6,
        route: Some("a"),
        field: "limits.max_duration_s",
        message: "invalid type",
    },
    Broken {
        text: "[[route]]\nname = \"a\"\nmatch = { default = true }\n\n[route.limits]\nmax_duration_s = 0\n",
        line: 6,
        route: Some("a"),
        field: "limits.max_duration_s",
        message: "0 is not between 1 and 86400 seconds",
    },
    Broken {
        text: "[[route]]\nname = \"a\"\nmatch = { exact = \"+1\", prefix = \"+2\" }\n",
        line: 3,
        route: Some("a"),
        field: "match",
        message: "exactly one of",
    },
    Broken {
        text: "[[route]]\nname = \"a\"\nmatch = { pattern = \"+44(\" }\n",
        line: 3,
        route: Some("a"),
        field: "match.pattern",
        message: "invalid regular expression",
    },
    Broken {
        text: "[[route]]\nname = \"a\"\nmatch = { default = true }\naudio_format = \"mp3\"\n",
        line: 4,
        route: Some("a"),
        field: "audio_format",
        message: "\"mp3\" is not an audio format",
    },
    Broken {
        text: "[[route]]\nname = \"a\"\nmatch = { default = true }\n[route.turn_detection]\ntype = \"server_vad\"\nthreshold = 1.5\n",
        line: 6,
        route: Some("a"),
        field: "turn_detection.threshold",
        message: "1.5 is not between 0 and 1",
    },
    Broken {
        text: "[[route]]\nname = \"a\"\nmatch = { default = true }\n[route.turn_detection]\ntype = \"server_vad\"\neagerness = \"low\"\n",
        line: 6,
        route: Some("a"),
        field: "turn_detection.eagerness",
        message: "does not apply to type = \"server_vad\"",
    },
    Broken {
        text: "[[route]]\nname = \"a\"\nmatch = { default = true }\nturn_detection = { type = \"semantic_vad\", eagerness = \"eager\" }\n",
        line: 4,
        route: Some("a"),
        field: "turn_detection.eagerness",
        message: "\"eager\" is not an eagerness",
    },
    Broken {
        text: "[[route]]\nname = \"a\"\nmatch = { default = true }\nturn_detection = { type = \"push_to_talk\" }\n",
        line: 4,
        route: Some("a"),
        field: "turn_detection.type",
        message: "not a turn detection type",
    },
    Broken {
        text: "[[route]]\nname = \"a\"\nmatch = { default = true }\n[[route.tools]]\nname = \"end call\"\ndescription = \"x\"\naction = { type = \"hangup\" }\n",
        line: 5,
        route: Some("a"),
        field: "tools[0].name",
        message: "is not a tool name",
    },
    Broken {
        text: "[[route]]\nname = \"a\"\nmatch = { default = true }\n[[route.tools]]\nname = \"t\"\ndescription = \"x\"\naction = { type = \"hangup\" }\n[[route.tools]]\nname = \"t\"\ndescription = \"y\"\naction = { type = \"hangup\" }\n",
        line: 9,
        route: Some("a"),
        field: "tools[1].name",
        message: "already the name of another tool",
    },
    Broken {
        text: "[[route]]\nname = \"sales\"\nmatch = { prefix = \"+1415\" }\n\n[[route.tools]]\nname = \"end_call\"\ndescription = \"Bye.\"\naction = { type = \"hangup\" }\n\n[[route.tools]]\nname = \"transfer_call\"\ndescription = \"Transfer.\"\nparameters = { type = \"object\", properties = { target = { type = \"string\" } } }\naction = { type = \"transfer\", target_arg = \"number\" }\n",
        line: 14,
        route: Some("sales"),
        field: "tools[1].action.target_arg",
        message: "\"number\" is not a property of the tool's parameters",
    },
    Broken {
        text: "[[route]]\nname = \"a\"\nmatch = { default = true }\n[[route.tools]]\nname = \"t\"\ndescription = \"x\"\nparameters = { type = \"string\" }\naction = { type = \"hangup\" }\n",
        line: 7,
        route: Some("a"),
        field: "tools[0].parameters.type",
        message: "must be \"object\"",
    },
    Broken {
        text: "[[route]]\nname = \"a\"\nmatch = { default = true }\n[[route.tools]]\nname = \"t\"\ndescription = \"x\"\naction = { type = \"dtmf\", digits = \"12x\" }\n",
        line: 7,
        route: Some("a"),
        field: "tools[0].action.digits",
        message: "\"12x\" is not a DTMF string",
    },
    Broken {
        text: "[[route]]\nname = \"a\"\nmatch = { default = true }\n[[route.tools]]\nname = \"t\"\ndescription = \"x\"\naction = { type = \"webhook\", url = \"ftp://example.com/x\" }\n",
        line: 7,
        route: Some("a"),
        field: "tools[0].action.url",
        message: "is not an http or https URL",
    },
    Broken {
        text: "[[route]]\nname = \"a\"\nmatch = { default = true }\n[[route.tools]]\nname = \"t\"\ndescription = \"x\"\n[route.tools.action]\ntype = \"webhook\"\nurl = \"https://example.com/x\"\ntimeout_ms = 0\n",
        line: 10,
        route: Some("a"),
        field: "tools[0].action.timeout_ms",
        message: "0 is not between 1 and 60000 milliseconds",
    },
    Broken {
        text: "[[route]]\nname = \"a\"\nmatch = { default = true }\n[[route.tools]]\nname = \"t\"\ndescription = \"x\"\naction = { type = \"hangup\", target = \"+1555\" }\n",
        line: 7,
        route: Some("a"),
        field: "tools[0].action.target",
        message: "is not a field of a \"hangup\" action",
    },
    Broken {
        text: "[[route]]\nname = \"a\"\nmatch = { default = true }\n[[route.tools]]\nname = \"t\"\ndescription = \"x\"\naction = { type = \"transfer\" }\n",
        line: 7,
        route: Some("a"),
        field: "tools[0].action",
        message: "needs `target` (fixed) or `target_arg` (from the model)",
    },
    Broken {
        text: "[[route]]\nname = \"a\"\nmatch = { default = true }\n[[route.tools]]\nname = \"t\"\ndescription = \"x\"\naction = { type = \"call_police\" }\n",
        line: 7,
        route: Some("a"),
        field: "tools[0].action.type",
        message: "\"call_police\" is not an action",
    },
    Broken {
        text: "[[route]]\nname = \"a\"\nmatch = { default = true }\n[route.dtmf]\nbindings = { \"12\" = \"t\" }\n",
        line: 5,
        route: Some("a"),
        field: "dtmf.bindings.12",
        message: "\"12\" is not a DTMF digit",
    },
    Broken {
        text: "[[route]]\nname = \"a\"\nmatch = { default = true }\n[route.dtmf]\nbindings = { \"#\" = \"end_call\" }\n",
        line: 5,
        route: Some("a"),
        field: "dtmf.bindings.\"#\"",
        message: "\"end_call\" is not a tool of this route",
    },
    Broken {
        text: "[[route]]\nname = \"a\"\nmatch = { default = true }\n[route.dtmf]\nbindings = { \"1\" = \"dial\" }\n[[route.tools]]\nname = \"dial\"\ndescription = \"x\"\nparameters = { type = \"object\", properties = { d = { type = \"string\" } } }\naction = { type = \"dtmf\", digits_arg = \"d\" }\n",
        line: 5,
        route: Some("a"),
        field: "dtmf.bindings.1",
        message: "cannot be bound to a key",
    },
    Broken {
        text: "[[route]]\nname = \"a\"\nmatch = { default = true }\n\n[[route]]\nname = \"b\"\nmatch = { default = true }\n",
        line: 7,
        route: Some("b"),
        field: "match.default",
        message: "more than one default route",
    },
    Broken {
        text: "[[route]]\nname = \"a\"\nmatch = { exact = \"+1555\" }\n\n[[route]]\nname = \"a\"\nmatch = { exact = \"+1666\" }\n",
        line: 6,
        route: Some("a"),
        field: "name",
        message: "route name is already used at dialplans/test.toml:2",
    },
    Broken {
        text: "[[route]]\nname = \"a\"\nmatch = { exact = \"+1555\" }\n\n[[route]]\nname = \"b\"\nmatch = { exact = \"+1555\" }\n",
        line: 7,
        route: Some("b"),
        field: "match.exact",
        message: "exact \"+1555\" is already matched by route \"a\"",
    },
    Broken {
        text: "[[route]]\nname = \"a\"\nmatch = { default = true }\n\n[routes]\nx = 1\n",
        line: 5,
        route: None,
        field: "routes",
        message: "unknown top-level key",
    },
];

#[test]
fn broken_snippets_name_line_route_and_field() {
    for case in BROKEN {
        let found = problems(case.text);
        let first = &found[0];
        let shown = first.to_string();
        assert_eq!(first.path, Path::new("dialplans/test.toml"), "{shown}");
        assert_eq!(first.line, case.line, "line of: {shown}\n{}", case.text);
        assert_eq!(first.route.as_deref(), case.route, "route of: {shown}");
        assert_eq!(
            first.field.as_deref(),
            Some(case.field),
            "field of: {shown}"
        );
        assert!(
            first.message.contains(case.message),
            "message of: {shown}\nexpected to contain: {}",
            case.message
        );
        assert!(!shown.contains('\n'), "one line: {shown}");
    }
}

#[test]
fn problem_display_is_one_line_with_file_line_route_and_field() {
    let text = BROKEN
        .iter()
        .find(|b| b.field == "tools[1].action.target_arg")
        .unwrap()
        .text;
    let problem = &problems(text)[0];
    assert_eq!(
        problem.to_string(),
        "dialplans/test.toml:14: route \"sales\" field `tools[1].action.target_arg`: \
         \"number\" is not a property of the tool's parameters"
    );
    println!("{problem}");
    let unnamed = &problems("[[route]]\nmatch = { default = true }\n")[0];
    assert_eq!(
        unnamed.to_string(),
        "dialplans/test.toml:1: field `route[0].name`: missing field `name`"
    );
    println!("{unnamed}");
}

#[test]
fn syntax_errors_name_the_line() {
    let found = problems("[[route]]\nname = \"a\"\nmatch = { default = true \n");
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].line, 3);
    assert!(found[0].message.starts_with("invalid TOML"), "{}", found[0]);
    assert!(found[0].field.is_none());
}

#[test]
fn every_mistake_of_a_route_is_reported() {
    let text = r#"[[route]]
name = "multi"
match = { default = true }
audio_format = "opus"
turn_detection = { type = "server_vad", threshold = -1.0 }

[route.dtmf]
bindings = { "x" = "end_call" }

[[route.tools]]
name = "bad name"
description = ""
action = { type = "webhook", url = "not a url" }
"#;
    let found = problems(text);
    let fields: Vec<(usize, &str)> = found
        .iter()
        .map(|p| (p.line, p.field.as_deref().unwrap_or("")))
        .collect();
    assert_eq!(
        fields,
        [
            (4, "audio_format"),
            (5, "turn_detection.threshold"),
            (8, "dtmf.bindings.x"),
            (11, "tools[0].name"),
            (12, "tools[0].description"),
            (13, "tools[0].action.url"),
        ],
        "{}",
        found
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[test]
fn every_mistake_of_a_directory_is_reported() {
    let dir = TempDir::new("multi");
    dir.write(
        "a.toml",
        "[[route]]\nname = \"main\"\nmatch = { default = true }\nvoice = 7\n\n[[route]]\nname = \"ok\"\nmatch = { exact = \"+1555\" }\n",
    );
    dir.write(
        "b.toml",
        "[[route]]\nname = \"ok\"\nmatch = { exact = \"+1555\" }\n\n[[route]]\nname = \"other-default\"\nmatch = { default = true }\n",
    );
    dir.write("c.toml", "this is = not toml =\n");
    // Ignored: hidden files, other extensions and subdirectories.
    dir.write(".hidden.toml", "garbage");
    dir.write("notes.txt", "garbage");
    std::fs::create_dir_all(dir.0.join("sub")).unwrap();
    dir.write("sub/x.toml", "garbage");

    let err = Dialplan::load_dir(&dir.0).expect_err("invalid");
    let shown = err.to_string();
    println!("{shown}");
    let lines: Vec<&str> = shown.lines().collect();
    assert_eq!(lines.len(), 5, "{shown}");
    let a = dir.0.join("a.toml").display().to_string();
    let b = dir.0.join("b.toml").display().to_string();
    let c = dir.0.join("c.toml").display().to_string();
    let expected_starts = [
        format!("{a}:4: route \"main\" field `voice`: invalid type"),
        format!("{b}:2: route \"ok\" field `name`: route name is already used at {a}:7"),
        format!("{b}:3: route \"ok\" field `match.exact`: exact \"+1555\" is already matched"),
        // "main" has a mistake of its own, but is still known to be the default route.
        format!(
            "{b}:7: route \"other-default\" field `match.default`: more than one default route: \
             route \"main\" at {a}:3"
        ),
        format!("{c}:1: invalid TOML"),
    ];
    for (line, start) in lines.iter().zip(&expected_starts) {
        assert!(
            line.starts_with(start.as_str()),
            "{line}\ndoes not start with\n{start}"
        );
    }
    assert_eq!(err.problems().len(), 5);
    assert!(check(&dir.0).is_err());
}

#[test]
fn directories_without_routes_are_rejected() {
    let dir = TempDir::new("empty");
    assert!(matches!(
        Dialplan::load_dir(&dir.0),
        Err(DialplanError::NoRoutes { .. })
    ));
    dir.write("blank.toml", "# nothing yet\n");
    let err = Dialplan::load_dir(&dir.0).expect_err("no routes");
    assert!(matches!(err, DialplanError::NoRoutes { .. }), "{err}");
    assert!(err.to_string().contains("defines no route"), "{err}");

    let missing = dir.0.join("does-not-exist");
    assert!(matches!(
        Dialplan::load_dir(&missing),
        Err(DialplanError::ReadDir { .. })
    ));
    assert!(matches!(load_one(""), Err(DialplanError::NoRoutes { .. })));
}
