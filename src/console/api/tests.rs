use std::collections::BTreeSet;

use super::{OPENAPI, ROUTES};

/// The OpenAPI document lists exactly the routes the server registers:
/// [`ROUTES`] is made from the same list as the scope (`api_routes!`).
#[test]
fn the_openapi_document_lists_exactly_the_registered_routes() {
    let doc: serde_json::Value = serde_json::from_str(OPENAPI).expect("docs/console-api.json");
    assert_eq!(doc["openapi"], "3.1.0");
    const METHODS: [&str; 8] = [
        "get", "put", "post", "delete", "options", "head", "patch", "trace",
    ];
    let documented: BTreeSet<(String, String)> = doc["paths"]
        .as_object()
        .expect("paths")
        .iter()
        .flat_map(|(path, item)| {
            item.as_object()
                .expect("path item")
                .keys()
                .filter(|k| METHODS.contains(&k.as_str()))
                .map(move |method| (method.clone(), path.clone()))
        })
        .collect();
    let registered: BTreeSet<(String, String)> = ROUTES
        .iter()
        .map(|(m, p)| ((*m).to_owned(), (*p).to_owned()))
        .collect();
    assert_eq!(
        registered.len(),
        ROUTES.len(),
        "a route is registered twice"
    );
    let undocumented: Vec<_> = registered.difference(&documented).collect();
    let unserved: Vec<_> = documented.difference(&registered).collect();
    assert!(
        undocumented.is_empty(),
        "routes missing from docs/console-api.json: {undocumented:?}"
    );
    assert!(
        unserved.is_empty(),
        "docs/console-api.json lists routes the server lacks: {unserved:?}"
    );
}

/// Every operation documents its answers, and every `$ref` resolves.
#[test]
fn the_openapi_document_is_self_contained() {
    let doc: serde_json::Value = serde_json::from_str(OPENAPI).unwrap();
    fn refs<'a>(v: &'a serde_json::Value, out: &mut Vec<&'a str>) {
        match v {
            serde_json::Value::Object(map) => {
                if let Some(serde_json::Value::String(r)) = map.get("$ref") {
                    out.push(r);
                }
                map.values().for_each(|v| refs(v, out));
            }
            serde_json::Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
            _ => {}
        }
    }
    let mut found = Vec::new();
    refs(&doc, &mut found);
    assert!(!found.is_empty());
    for r in found {
        let pointer = r
            .strip_prefix('#')
            .unwrap_or_else(|| panic!("external $ref {r}"));
        assert!(doc.pointer(pointer).is_some(), "dangling $ref {r}");
    }
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let responses = op["responses"].as_object().unwrap();
            assert!(responses.contains_key("200"), "{method} {path}: no 200");
        }
    }
}
