//! Tests of the provider settings read from the environment and of the handshake requests
//! built from them.

use std::collections::HashMap;

use super::*;

fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    move |k| map.get(k).cloned()
}

fn settings(provider: Provider) -> RealtimeSettings {
    RealtimeSettings {
        provider,
        url_override: None,
    }
}

fn header<'a>(request: &'a http::Request<()>, name: &str) -> Option<&'a str> {
    request.headers().get(name).and_then(|v| v.to_str().ok())
}

#[test]
fn openai_request() {
    let s = settings(Provider::OpenAi {
        api_key: "sk-test".into(),
    });
    let request = request_for(&s, "gpt-realtime").unwrap();
    assert_eq!(
        request.uri().to_string(),
        "wss://api.openai.com/v1/realtime?model=gpt-realtime"
    );
    assert_eq!(header(&request, "authorization"), Some("Bearer sk-test"));
    assert_eq!(header(&request, "api-key"), None);
    assert_eq!(header(&request, "openai-beta"), None);
    assert_eq!(header(&request, "host"), Some("api.openai.com"));
    assert!(request.headers()["authorization"].is_sensitive());
}

#[test]
fn azure_ga_request_uses_deployment_or_model() {
    let mut s = settings(Provider::Azure {
        endpoint: "https://res.openai.azure.com/".into(),
        api_key: "az-key".into(),
        deployment: Some("my-deploy".into()),
        api_version: None,
    });
    let request = request_for(&s, "gpt-realtime").unwrap();
    assert_eq!(
        request.uri().to_string(),
        "wss://res.openai.azure.com/openai/v1/realtime?model=my-deploy"
    );
    assert_eq!(header(&request, "api-key"), Some("az-key"));
    assert_eq!(header(&request, "authorization"), None);

    if let Provider::Azure { deployment, .. } = &mut s.provider {
        *deployment = None;
    }
    let request = request_for(&s, "gpt-realtime").unwrap();
    assert_eq!(
        request.uri().to_string(),
        "wss://res.openai.azure.com/openai/v1/realtime?model=gpt-realtime"
    );
}

#[test]
fn azure_preview_request_with_api_version() {
    let s = settings(Provider::Azure {
        endpoint: "https://res.openai.azure.com".into(),
        api_key: "az-key".into(),
        deployment: Some("rt".into()),
        api_version: Some("2025-04-01-preview".into()),
    });
    let request = request_for(&s, "gpt-realtime").unwrap();
    assert_eq!(
        request.uri().to_string(),
        "wss://res.openai.azure.com/openai/realtime?api-version=2025-04-01-preview&deployment=rt"
    );
    assert_eq!(header(&request, "api-key"), Some("az-key"));
}

#[test]
fn azure_endpoint_schemes() {
    assert_eq!(
        azure_base("res.openai.azure.com").unwrap(),
        "wss://res.openai.azure.com"
    );
    assert_eq!(
        azure_base("http://127.0.0.1:9/").unwrap(),
        "ws://127.0.0.1:9"
    );
    assert!(matches!(
        azure_base("ftp://res"),
        Err(RealtimeError::InvalidUrl { .. })
    ));
}

#[test]
fn override_url_keeps_the_provider_header_and_adds_the_model() {
    let s = RealtimeSettings {
        provider: Provider::OpenAi {
            api_key: "sk-test".into(),
        },
        url_override: Some("ws://127.0.0.1:9000/v1/realtime".into()),
    };
    let request = request_for(&s, "gpt-realtime").unwrap();
    assert_eq!(
        request.uri().to_string(),
        "ws://127.0.0.1:9000/v1/realtime?model=gpt-realtime"
    );
    assert_eq!(header(&request, "authorization"), Some("Bearer sk-test"));

    let s = RealtimeSettings {
        provider: Provider::Azure {
            endpoint: "https://res.openai.azure.com".into(),
            api_key: "az-key".into(),
            deployment: None,
            api_version: None,
        },
        url_override: Some("wss://proxy.example/rt?model=fixed&x=1".into()),
    };
    let request = request_for(&s, "gpt-realtime").unwrap();
    assert_eq!(
        request.uri().to_string(),
        "wss://proxy.example/rt?model=fixed&x=1"
    );
    assert_eq!(header(&request, "api-key"), Some("az-key"));
}

#[test]
fn custom_request_with_and_without_key() {
    let s = settings(Provider::Custom {
        url: "ws://127.0.0.1:9000/v1/realtime?region=eu".into(),
        api_key: None,
    });
    let request = request_for(&s, "m").unwrap();
    assert_eq!(
        request.uri().to_string(),
        "ws://127.0.0.1:9000/v1/realtime?region=eu&model=m"
    );
    assert_eq!(header(&request, "authorization"), None);

    let s = settings(Provider::Custom {
        url: "ws://127.0.0.1:9000/v1/realtime".into(),
        api_key: Some("k".into()),
    });
    let request = request_for(&s, "m").unwrap();
    assert_eq!(header(&request, "authorization"), Some("Bearer k"));
}

#[test]
fn embedded_has_no_endpoint_unless_overridden() {
    let mut s = settings(Provider::Embedded);
    assert!(matches!(
        request_for(&s, "m"),
        Err(RealtimeError::NoEndpoint)
    ));
    s.url_override = Some("ws://127.0.0.1:9000/".into());
    let request = request_for(&s, "m").unwrap();
    assert_eq!(request.uri().to_string(), "ws://127.0.0.1:9000/?model=m");
    assert_eq!(header(&request, "authorization"), None);
}

#[test]
fn invalid_urls_and_keys_are_errors() {
    let s = settings(Provider::Custom {
        url: "https://example.com/v1/realtime?key=secret".into(),
        api_key: None,
    });
    let err = request_for(&s, "m").unwrap_err();
    assert!(matches!(err, RealtimeError::InvalidUrl { .. }));
    assert!(!err.to_string().contains("secret"), "{err}");

    let s = settings(Provider::Custom {
        url: "not a url".into(),
        api_key: None,
    });
    assert!(matches!(
        request_for(&s, "m"),
        Err(RealtimeError::InvalidUrl { .. })
    ));

    let s = settings(Provider::OpenAi {
        api_key: "bad\nkey".into(),
    });
    assert!(matches!(
        request_for(&s, "m"),
        Err(RealtimeError::InvalidKey)
    ));
}

#[test]
fn model_and_query_values_are_encoded() {
    assert_eq!(encode("gpt-realtime_2.1~x"), "gpt-realtime_2.1~x");
    assert_eq!(encode("a b&c=d/é"), "a%20b%26c%3Dd%2F%C3%A9");
    assert_eq!(with_model("ws://h/p?", "m"), "ws://h/p?model=m");
    assert_eq!(with_model("ws://h/p?a=1&", "m"), "ws://h/p?a=1&model=m");
    assert_eq!(
        with_model("ws://h/p?mode=1", "m"),
        "ws://h/p?mode=1&model=m"
    );
    assert_eq!(with_model("ws://h/p?model", "m"), "ws://h/p?model");
    assert_eq!(with_model("ws://h/p#f", "m"), "ws://h/p?model=m#f");
}

#[test]
fn env_precedence() {
    let all = [
        ("AZURE_OPENAI_ENDPOINT", "https://res.openai.azure.com"),
        ("AZURE_OPENAI_API_KEY", "az"),
        ("AZURE_OPENAI_DEPLOYMENT", "dep"),
        ("AZURE_OPENAI_API_VERSION", "2025-04-01-preview"),
        ("OPENAI_API_KEY", "sk"),
        ("DIALTONE_REALTIME_URL", "ws://127.0.0.1:1/rt"),
    ];
    let s = RealtimeSettings::from_env_map(env(&all));
    assert_eq!(
        s.provider,
        Provider::Azure {
            endpoint: "https://res.openai.azure.com".into(),
            api_key: "az".into(),
            deployment: Some("dep".into()),
            api_version: Some("2025-04-01-preview".into()),
        }
    );
    assert_eq!(s.url_override.as_deref(), Some("ws://127.0.0.1:1/rt"));

    // Azure needs both variables.
    let s = RealtimeSettings::from_env_map(env(&all[1..]));
    assert_eq!(
        s.provider,
        Provider::OpenAi {
            api_key: "sk".into()
        }
    );
    assert_eq!(s.url_override.as_deref(), Some("ws://127.0.0.1:1/rt"));

    let s = RealtimeSettings::from_env_map(env(&[
        ("OPENAI_API_KEY", "  "),
        ("DIALTONE_REALTIME_URL", "ws://127.0.0.1:1/rt"),
    ]));
    assert_eq!(
        s.provider,
        Provider::Custom {
            url: "ws://127.0.0.1:1/rt".into(),
            api_key: None
        }
    );
    assert_eq!(s.url_override, None);

    let s = RealtimeSettings::from_env_map(env(&[]));
    assert_eq!(s, settings(Provider::Embedded));
}

#[test]
fn describe_and_debug_never_show_keys() {
    let cases = [
        RealtimeSettings {
            provider: Provider::OpenAi {
                api_key: "sk-SECRET".into(),
            },
            url_override: Some("wss://u:SECRET@proxy.example/rt?api-key=SECRET".into()),
        },
        settings(Provider::Azure {
            endpoint: "https://res.openai.azure.com".into(),
            api_key: "SECRET".into(),
            deployment: None,
            api_version: Some("2024-10-01-preview".into()),
        }),
        settings(Provider::Custom {
            url: "ws://127.0.0.1:1/rt?token=SECRET".into(),
            api_key: Some("SECRET".into()),
        }),
        settings(Provider::Embedded),
    ];
    for s in &cases {
        let line = s.describe();
        assert!(!line.contains("SECRET"), "{line}");
        let debug = format!("{s:?}");
        assert!(!debug.contains("SECRET"), "{debug}");
        if let Ok(request) = request_for(s, "m") {
            let debug = format!("{:?}", request.headers());
            assert!(!debug.contains("SECRET"), "{debug}");
        }
    }
    assert_eq!(
        cases[0].describe(),
        "OpenAI (wss://api.openai.com/v1/realtime), URL overridden to wss://proxy.example/rt"
    );
    assert_eq!(cases[3].describe(), "embedded engine");
}
