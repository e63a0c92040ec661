//! The deployment template (`deploy/template.yaml`) against the binary: the
//! environment variables it sets must be exactly the ones the binary reads
//! (`event_recorder::config::VARIABLES`, less the local-only ones), so the two
//! cannot drift; and the function must be wired as the binary expects.
//!
//! `EVENT_RECORDER_DEPLOY_TEMPLATE` points the tests at another template file.

use std::collections::BTreeSet;
use std::path::PathBuf;

use saphyr::{LoadableYamlNode, Scalar, Yaml};

/// Read by the binaries, but for local runs and tests only: never deployed.
const LOCAL_ONLY: &[&str] = &["LOCAL_DATA_KEY"];

/// A template node. Short-form intrinsic functions (`!Ref x`, `!If [..]`) are
/// turned into their long form (`{Ref: x}`, `{Fn::If: [..]}`), so both
/// spellings read alike.
#[derive(Debug, Clone, PartialEq)]
enum Node {
    Scalar(String),
    List(Vec<Node>),
    Map(Vec<(String, Node)>),
}

impl Node {
    fn from_yaml(yaml: &Yaml) -> Node {
        match yaml {
            Yaml::Value(scalar) => Node::Scalar(match scalar {
                Scalar::Null => String::new(),
                Scalar::Boolean(b) => b.to_string(),
                Scalar::Integer(i) => i.to_string(),
                Scalar::FloatingPoint(f) => f.to_string(),
                Scalar::String(s) => s.to_string(),
            }),
            Yaml::Representation(text, _, _) => Node::Scalar(text.to_string()),
            Yaml::Sequence(items) => Node::List(items.iter().map(Node::from_yaml).collect()),
            Yaml::Mapping(entries) => Node::Map(
                entries
                    .iter()
                    .map(|(k, v)| (Node::from_yaml(k).text().to_owned(), Node::from_yaml(v)))
                    .collect(),
            ),
            Yaml::Tagged(tag, node) => {
                assert_eq!(tag.handle, "!", "unexpected YAML tag {tag:?}");
                let function = match tag.suffix.as_str() {
                    "Ref" | "Condition" => tag.suffix.clone(),
                    other => format!("Fn::{other}"),
                };
                Node::Map(vec![(function, Node::from_yaml(node))])
            }
            Yaml::Alias(_) | Yaml::BadValue => panic!("unsupported YAML node {yaml:?}"),
        }
    }

    fn get(&self, key: &str) -> Option<&Node> {
        match self {
            Node::Map(entries) => entries.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    fn at(&self, path: &[&str]) -> &Node {
        path.iter().fold(self, |node, key| {
            node.get(key)
                .unwrap_or_else(|| panic!("{} not found in the template", path.join(".")))
        })
    }

    fn text(&self) -> &str {
        match self {
            Node::Scalar(s) => s,
            other => panic!("expected a scalar, found {other:?}"),
        }
    }

    fn entries(&self) -> &[(String, Node)] {
        match self {
            Node::Map(entries) => entries,
            other => panic!("expected a mapping, found {other:?}"),
        }
    }

    /// `(function, argument)` if this node is an intrinsic function call.
    fn intrinsic(&self) -> Option<(&str, &Node)> {
        match self {
            Node::Map(entries) if entries.len() == 1 => {
                let (key, arg) = &entries[0];
                (key == "Ref" || key.starts_with("Fn::")).then_some((key.as_str(), arg))
            }
            _ => None,
        }
    }

    /// The values this node can take once conditions are resolved: both
    /// branches of every `Fn::If`; nothing for `Ref: AWS::NoValue`.
    fn branches(&self) -> Vec<&Node> {
        match self.intrinsic() {
            Some(("Fn::If", Node::List(args))) if args.len() == 3 => {
                args[1..].iter().flat_map(Node::branches).collect()
            }
            Some(("Fn::If", arg)) => panic!("malformed Fn::If: {arg:?}"),
            Some(("Ref", Node::Scalar(name))) if name == "AWS::NoValue" => vec![],
            _ => vec![self],
        }
    }
}

fn template_path() -> PathBuf {
    std::env::var_os("EVENT_RECORDER_DEPLOY_TEMPLATE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("deploy/template.yaml"))
}

fn parse(text: &str) -> Node {
    let docs = Yaml::load_from_str(text).expect("the template is not valid YAML");
    assert_eq!(docs.len(), 1, "expected one YAML document");
    Node::from_yaml(&docs[0])
}

fn template() -> Node {
    let path = template_path();
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    parse(&text)
}

/// The one resource of `type_`, as (logical id, resource).
fn resource<'a>(template: &'a Node, type_: &str) -> (&'a str, &'a Node) {
    let found: Vec<_> = template
        .at(&["Resources"])
        .entries()
        .iter()
        .filter(|(_, r)| r.get("Type").map(Node::text) == Some(type_))
        .collect();
    assert_eq!(found.len(), 1, "expected exactly one {type_} resource");
    (found[0].0.as_str(), &found[0].1)
}

/// Every variable name the function's environment can set, under any
/// combination of conditions.
fn environment_names(function: &Node) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let Some(environment) = function.at(&["Properties"]).get("Environment") else {
        return names;
    };
    for environment in environment.branches() {
        let Some(variables) = environment.get("Variables") else {
            continue;
        };
        for variables in variables.branches() {
            for (name, value) in variables.entries() {
                if !value.branches().is_empty() {
                    names.insert(name.clone());
                }
            }
        }
    }
    names
}

#[test]
fn environment_is_exactly_what_the_binary_reads() {
    let template = template();
    let (_, function) = resource(&template, "AWS::Lambda::Function");
    let set = environment_names(function);
    let read: BTreeSet<String> = event_recorder::config::VARIABLES
        .iter()
        .filter(|name| !LOCAL_ONLY.contains(name))
        .map(|name| name.to_string())
        .collect();
    let not_read: Vec<_> = set.difference(&read).collect();
    let not_set: Vec<_> = read.difference(&set).collect();
    assert!(
        not_read.is_empty() && not_set.is_empty(),
        "{} and event_recorder::config::VARIABLES (less {LOCAL_ONLY:?}) disagree:\n  \
         set by the template but not read by the binary: {not_read:?}\n  \
         read by the binary but never set by the template: {not_set:?}",
        template_path().display()
    );
}

#[test]
fn function_is_a_custom_runtime_answering_partial_batch_responses() {
    let template = template();
    let (function_id, function) = resource(&template, "AWS::Lambda::Function");
    let properties = function.at(&["Properties"]);
    assert_eq!(properties.at(&["Runtime"]).text(), "provided.al2023");
    assert_eq!(properties.at(&["Handler"]).text(), "bootstrap");
    assert_eq!(
        properties.at(&["Architectures"]),
        &Node::List(vec![Node::Scalar("x86_64".into())])
    );

    let (_, mapping) = resource(&template, "AWS::Lambda::EventSourceMapping");
    let mapping = mapping.at(&["Properties"]);
    let Node::List(types) = mapping.at(&["FunctionResponseTypes"]) else {
        panic!("FunctionResponseTypes is not a list");
    };
    assert!(
        types.contains(&Node::Scalar("ReportBatchItemFailures".into())),
        "the event source mapping must have FunctionResponseTypes: [ReportBatchItemFailures], \
         or every message of a batch with one failure is retried: {types:?}"
    );
    assert_eq!(
        mapping.at(&["FunctionName"]).intrinsic(),
        Some(("Ref", &Node::Scalar(function_id.into()))),
        "the event source mapping must invoke the template's function"
    );
}

#[test]
fn queue_has_a_dead_letter_queue_and_six_times_the_function_timeout() {
    let template = template();
    let (_, mapping) = resource(&template, "AWS::Lambda::EventSourceMapping");
    let Some(("Fn::GetAtt", source)) = mapping.at(&["Properties", "EventSourceArn"]).intrinsic()
    else {
        panic!("EventSourceArn is not a Fn::GetAtt of the queue");
    };
    // `!GetAtt Queue.Arn`, or `Fn::GetAtt: [Queue, Arn]` in long form.
    let queue_id = match source {
        Node::List(parts) => parts[0].text(),
        short => short.text().trim_end_matches(".Arn"),
    };
    let queue = template.at(&["Resources", queue_id, "Properties"]);
    assert!(
        queue
            .at(&["RedrivePolicy"])
            .get("deadLetterTargetArn")
            .is_some(),
        "the queue needs a redrive policy to a dead-letter queue"
    );

    // VisibilityTimeout: !FindInMap [QueueVisibility, !Ref FunctionTimeout, VisibilityTimeout],
    // a table that must hold 6 x every timeout the FunctionTimeout parameter allows.
    let Some(("Fn::FindInMap", Node::List(args))) = queue.at(&["VisibilityTimeout"]).intrinsic()
    else {
        panic!("the queue's VisibilityTimeout is not looked up from the function timeout");
    };
    let table = template.at(&["Mappings", args[0].text()]);
    let Node::List(allowed) = template.at(&["Parameters", "FunctionTimeout", "AllowedValues"])
    else {
        panic!("FunctionTimeout has no AllowedValues list");
    };
    for timeout in allowed {
        let timeout = timeout.text();
        let visibility = table.at(&[timeout, args[2].text()]).text();
        assert_eq!(
            visibility.parse::<u32>().unwrap(),
            6 * timeout.parse::<u32>().unwrap(),
            "visibility timeout for a {timeout} s function timeout"
        );
    }
    let (_, function) = resource(&template, "AWS::Lambda::Function");
    assert_eq!(
        function.at(&["Properties", "Timeout"]).intrinsic(),
        Some(("Ref", &Node::Scalar("FunctionTimeout".into())))
    );
}

/// The collector itself: short and long forms, nested conditions, a whole
/// Variables map under a condition, and names that are never set.
#[test]
fn collector_reads_every_branch() {
    let function = parse(
        r#"
Properties:
  Environment:
    Variables: !If
      - A
      - ONE: !If [B, !Ref AWS::NoValue, x]
        TWO: {"Fn::If": [C, {"Ref": "AWS::NoValue"}, {"Fn::If": [D, y, {"Ref": "AWS::NoValue"}]}]}
        NEVER: !If [E, !Ref AWS::NoValue, !Ref AWS::NoValue]
      - THREE: !Sub "${P}"
        FOUR: plain
"#,
    );
    let names: Vec<String> = environment_names(&function).into_iter().collect();
    assert_eq!(names, ["FOUR", "ONE", "THREE", "TWO"]);
}
