//! The deployment template (`deploy/template.yaml`) against the binary. Each
//! of the three functions must name a handler the binary knows, and set exactly
//! the environment variables that handler reads (`Handler::variables()`, less
//! the local-only ones), so the two cannot drift. The recorder must be wired as
//! its SQS handler expects; the two S3 functions must be triggered only by
//! their own key prefix (they write into the bucket that triggers them), get
//! exactly the S3 actions they call on that bucket's objects, and send failed
//! events to a queue with an alarm.
//!
//! `EVENT_RECORDER_DEPLOY_TEMPLATE` points the tests at another template file.

use std::collections::BTreeSet;
use std::path::PathBuf;

use event_recorder::functions::Handler;
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

/// Every resource of `type_`, as (logical id, resource).
fn resources<'a>(template: &'a Node, type_: &str) -> Vec<(&'a str, &'a Node)> {
    template
        .at(&["Resources"])
        .entries()
        .iter()
        .filter(|(_, r)| r.get("Type").map(Node::text) == Some(type_))
        .map(|(id, r)| (id.as_str(), r))
        .collect()
}

/// The one resource of `type_`, as (logical id, resource).
fn resource<'a>(template: &'a Node, type_: &str) -> (&'a str, &'a Node) {
    let found = resources(template, type_);
    assert_eq!(found.len(), 1, "expected exactly one {type_} resource");
    found[0]
}

/// The logical id a `Ref` names.
fn ref_target(node: &Node) -> Option<&str> {
    match node.intrinsic() {
        Some(("Ref", Node::Scalar(name))) => Some(name),
        _ => None,
    }
}

/// `(logical id, attribute)` of a `Fn::GetAtt`, short (`X.Arn`) or long
/// (`[X, Arn]`) form.
fn get_att(node: &Node) -> Option<(&str, &str)> {
    match node.intrinsic()? {
        ("Fn::GetAtt", Node::Scalar(short)) => short.split_once('.'),
        ("Fn::GetAtt", Node::List(parts)) if parts.len() == 2 => {
            Some((parts[0].text(), parts[1].text()))
        }
        _ => None,
    }
}

/// The items of a property that takes one value or a list of them.
fn one_or_many(node: &Node) -> Vec<&Node> {
    match node {
        Node::List(items) => items.iter().collect(),
        one => vec![one],
    }
}

/// Whether `node` or anything inside it satisfies `predicate`.
fn contains_node(node: &Node, predicate: &dyn Fn(&Node) -> bool) -> bool {
    predicate(node)
        || match node {
            Node::Scalar(_) => false,
            Node::List(items) => items.iter().any(|n| contains_node(n, predicate)),
            Node::Map(entries) => entries.iter().any(|(_, n)| contains_node(n, predicate)),
        }
}

struct Function<'a> {
    id: &'a str,
    handler: Handler,
    resource: &'a Node,
}

impl Function<'_> {
    fn name(&self) -> &str {
        self.resource.at(&["Properties", "Handler"]).text()
    }
}

/// The template's functions with the handler each names. Panics on a Handler
/// the binary does not know.
fn functions(template: &Node) -> Vec<Function<'_>> {
    resources(template, "AWS::Lambda::Function")
        .into_iter()
        .map(|(id, resource)| {
            let name = resource.at(&["Properties", "Handler"]).text();
            let handler = Handler::parse(Some(name))
                .ok()
                .filter(|_| Handler::NAMES.contains(&name))
                .unwrap_or_else(|| {
                    panic!("function {id}: Handler must be one of {:?}", Handler::NAMES)
                });
            Function {
                id,
                handler,
                resource,
            }
        })
        .collect()
}

fn function(template: &Node, handler: Handler) -> Function<'_> {
    functions(template)
        .into_iter()
        .find(|f| f.handler == handler)
        .unwrap_or_else(|| panic!("no function with the {handler:?} handler"))
}

const S3_FUNCTIONS: [Handler; 2] = [Handler::S3Import, Handler::IdpFraudUpload];

/// The S3 actions each S3 function calls: import reads a file, writes its
/// rejects and deletes it; fraud upload reads a report and its tags, then
/// moves it (copy with tags, delete).
fn s3_actions(handler: Handler) -> BTreeSet<&'static str> {
    let actions: &[&str] = match handler {
        Handler::S3Import => &["s3:GetObject", "s3:PutObject", "s3:DeleteObject"],
        Handler::IdpFraudUpload => &[
            "s3:GetObject",
            "s3:GetObjectTagging",
            "s3:PutObject",
            "s3:PutObjectTagging",
            "s3:DeleteObject",
        ],
        Handler::Sqs => panic!("the recorder is not an S3 function"),
    };
    actions.iter().copied().collect()
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

/// Every statement of the role's inline policies, under any combination of
/// conditions.
fn role_statements<'a>(template: &'a Node, function: &Function) -> Vec<&'a Node> {
    let role = function.resource.at(&["Properties", "Role"]);
    let Some((role_id, "Arn")) = get_att(role) else {
        panic!(
            "function {}: Role is not a Fn::GetAtt of a role's Arn",
            function.id
        );
    };
    let role = template.at(&["Resources", role_id]);
    assert_eq!(role.at(&["Type"]).text(), "AWS::IAM::Role");
    let properties = role.at(&["Properties"]);
    assert!(
        properties.get("ManagedPolicyArns").is_none(),
        "role {role_id}: grant through its inline Policies only, so that they are all it can do"
    );
    let mut statements = Vec::new();
    for policy in one_or_many(properties.at(&["Policies"])) {
        for policy in policy.branches() {
            for statement in one_or_many(policy.at(&["PolicyDocument", "Statement"])) {
                statements.extend(statement.branches());
            }
        }
    }
    statements
}

fn actions(statement: &Node) -> Vec<&str> {
    one_or_many(statement.at(&["Action"]))
        .into_iter()
        .map(Node::text)
        .collect()
}

/// The name of the upload bucket, as the S3 functions' roles and permissions
/// must spell it: the created bucket's BucketName, or the existing bucket's
/// parameter, chosen by the bucket's own condition.
fn upload_bucket_name(template: &Node) -> Node {
    let (_, bucket) = resource(template, "AWS::S3::Bucket");
    Node::Map(vec![(
        "Fn::If".into(),
        Node::List(vec![
            bucket.at(&["Condition"]).clone(),
            bucket.at(&["Properties", "BucketName"]).clone(),
            Node::Map(vec![(
                "Ref".into(),
                Node::Scalar("UploadBucketName".into()),
            )]),
        ]),
    )])
}

/// For `!Sub [arn:${AWS::Partition}:s3:::${Bucket}<rest>, {Bucket: <name>}]`,
/// `<rest>` if `<name>` is the upload bucket's name.
fn upload_bucket_arn_rest<'a>(template: &Node, arn: &'a Node) -> Option<&'a str> {
    let Some(("Fn::Sub", Node::List(args))) = arn.intrinsic() else {
        return None;
    };
    let [Node::Scalar(text), variables] = args.as_slice() else {
        return None;
    };
    let rest = text.strip_prefix("arn:${AWS::Partition}:s3:::${Bucket}")?;
    (variables.get("Bucket") == Some(&upload_bucket_name(template))).then_some(rest)
}

#[test]
fn each_function_names_its_own_handler() {
    let template = template();
    let functions = functions(&template);
    let names: BTreeSet<&str> = functions.iter().map(Function::name).collect();
    assert_eq!(
        names.len(),
        functions.len(),
        "two functions name the same Handler"
    );
    assert_eq!(
        names,
        Handler::NAMES.into_iter().collect(),
        "the template should deploy one function per handler"
    );
}

#[test]
fn environment_is_exactly_what_each_function_reads() {
    let template = template();
    assert_eq!(
        Handler::Sqs.variables(),
        event_recorder::config::VARIABLES,
        "the recorder reads the variables config documents"
    );
    for function in functions(&template) {
        let set = environment_names(function.resource);
        let read: BTreeSet<String> = function
            .handler
            .variables()
            .iter()
            .filter(|name| !LOCAL_ONLY.contains(name))
            .map(|name| name.to_string())
            .collect();
        let not_read: Vec<_> = set.difference(&read).collect();
        let not_set: Vec<_> = read.difference(&set).collect();
        assert!(
            not_read.is_empty() && not_set.is_empty(),
            "{}: function {} and Handler::{:?}.variables() (less {LOCAL_ONLY:?}) disagree:\n  \
             set by the template but not read by the binary: {not_read:?}\n  \
             read by the binary but never set by the template: {not_set:?}",
            template_path().display(),
            function.id,
            function.handler,
        );
    }
}

#[test]
fn functions_are_one_custom_runtime_zip() {
    let template = template();
    let functions = functions(&template);
    let code = functions[0].resource.at(&["Properties", "Code"]);
    for function in &functions {
        let properties = function.resource.at(&["Properties"]);
        assert_eq!(
            properties.at(&["Runtime"]).text(),
            "provided.al2023",
            "{}",
            function.id
        );
        let architectures = one_or_many(properties.at(&["Architectures"]));
        assert_eq!(architectures.len(), 1, "{}", function.id);
        assert_eq!(
            ref_target(architectures[0]),
            Some("Architecture"),
            "{}: Architectures must follow the Architecture parameter",
            function.id
        );
        assert_eq!(
            properties.at(&["Code"]),
            code,
            "function {} must run the same zip as {}",
            function.id,
            functions[0].id
        );
    }
}

/// The template offers exactly the architectures the build recipe makes a zip
/// for (nix/pins.json), x86_64 by default.
#[test]
fn architecture_parameter_matches_the_recipes_architectures() {
    let template = template();
    let parameter = template.at(&["Parameters", "Architecture"]);
    assert_eq!(parameter.at(&["Default"]).text(), "x86_64");
    let offered: BTreeSet<String> = one_or_many(parameter.at(&["AllowedValues"]))
        .into_iter()
        .map(|v| v.text().to_owned())
        .collect();
    let pins: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("nix/pins.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let built: BTreeSet<String> = pins["architectures"]
        .as_object()
        .unwrap()
        .keys()
        .filter(|k| !k.starts_with('_'))
        .cloned()
        .collect();
    assert_eq!(offered, built);
}

#[test]
fn recorder_answers_partial_batch_responses() {
    let template = template();
    let recorder = function(&template, Handler::Sqs);
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
        ref_target(mapping.at(&["FunctionName"])),
        Some(recorder.id),
        "the event source mapping must invoke the recorder"
    );
}

#[test]
fn queue_has_a_dead_letter_queue_and_six_times_the_function_timeout() {
    let template = template();
    let (_, mapping) = resource(&template, "AWS::Lambda::EventSourceMapping");
    let Some((queue_id, "Arn")) = get_att(mapping.at(&["Properties", "EventSourceArn"])) else {
        panic!("EventSourceArn is not a Fn::GetAtt of the queue's Arn");
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
    let recorder = function(&template, Handler::Sqs);
    assert_eq!(
        ref_target(recorder.resource.at(&["Properties", "Timeout"])),
        Some("FunctionTimeout")
    );
}

/// The functions write `success/` and `error/` objects into the bucket that
/// triggers them: a trigger that matched those keys would invoke a function
/// on its own output, without end.
#[test]
fn s3_triggers_filter_on_their_own_prefix() {
    let template = template();
    let (_, bucket) = resource(&template, "AWS::S3::Bucket");
    let triggers = one_or_many(bucket.at(&[
        "Properties",
        "NotificationConfiguration",
        "LambdaConfigurations",
    ]));
    let rules = template.at(&["Rules"]);
    let mut prefixes = Vec::new();
    for handler in S3_FUNCTIONS {
        let function = function(&template, handler);
        let mine: Vec<_> = triggers
            .iter()
            .filter(|t| get_att(t.at(&["Function"])) == Some((function.id, "Arn")))
            .collect();
        assert_eq!(mine.len(), 1, "{}: expected one S3 trigger", function.id);
        let filter = one_or_many(mine[0].at(&["Filter", "S3Key", "Rules"]));
        let prefix: Vec<_> = filter
            .iter()
            .filter(|r| r.at(&["Name"]).text().eq_ignore_ascii_case("prefix"))
            .map(|r| r.at(&["Value"]))
            .collect();
        assert_eq!(
            prefix.len(),
            1,
            "{}: the trigger needs one prefix filter",
            function.id
        );
        let prefix = prefix[0];
        let value = match ref_target(prefix) {
            Some(parameter) => {
                // The parameter's default, and a Rule that refuses the
                // result folders for any value given at deploy time.
                let refuses_results = |node: &Node| match node.intrinsic() {
                    Some(("Fn::Not", Node::List(args))) => match args[0].intrinsic() {
                        Some(("Fn::Contains", Node::List(args))) => {
                            ref_target(&args[1]) == Some(parameter)
                                && ["success/", "error/"].iter().all(|folder| {
                                    one_or_many(&args[0])
                                        .contains(&&Node::Scalar(folder.to_string()))
                                })
                        }
                        _ => false,
                    },
                    _ => false,
                };
                assert!(
                    contains_node(rules, &refuses_results),
                    "{}: no Rule refuses success/ and error/ as {parameter}",
                    function.id
                );
                template
                    .at(&["Parameters", parameter, "Default"])
                    .text()
                    .to_owned()
            }
            None => prefix.text().to_owned(),
        };
        for folder in ["success/", "error/"] {
            assert!(
                !value.is_empty() && !folder.starts_with(&value) && !value.starts_with(folder),
                "{}: the prefix {value:?} matches the function's own {folder} output",
                function.id
            );
        }
        prefixes.push((prefix, value));
    }
    let [(first, first_value), (second, second_value)] = prefixes.as_slice() else {
        unreachable!()
    };
    assert!(
        !first_value.starts_with(second_value.as_str())
            && !second_value.starts_with(first_value.as_str()),
        "the two S3 triggers' prefixes overlap"
    );
    if let (Some(a), Some(b)) = (ref_target(first), ref_target(second)) {
        let refuses_equal = |node: &Node| match node.intrinsic() {
            Some(("Fn::Not", Node::List(args))) => match args[0].intrinsic() {
                Some(("Fn::Equals", Node::List(operands))) => {
                    let operands: BTreeSet<_> = operands.iter().filter_map(ref_target).collect();
                    operands == BTreeSet::from([a, b])
                }
                _ => false,
            },
            _ => false,
        };
        assert!(
            contains_node(rules, &refuses_equal),
            "no Rule makes {a} and {b} differ"
        );
    }
}

#[test]
fn s3_functions_get_exactly_their_actions_on_the_buckets_objects() {
    let template = template();
    for handler in S3_FUNCTIONS {
        let function = function(&template, handler);
        let mut granted = BTreeSet::new();
        for statement in role_statements(&template, &function) {
            assert!(
                statement.get("NotAction").is_none() && statement.get("NotResource").is_none(),
                "{}: a NotAction or NotResource statement grants more than it names",
                function.id
            );
            let actions = actions(statement);
            assert!(
                actions.iter().all(|a| !a.contains('*')),
                "{}: wildcard action in {actions:?}",
                function.id
            );
            let s3: Vec<_> = actions.iter().filter(|a| a.starts_with("s3:")).collect();
            if s3.is_empty() {
                continue;
            }
            assert_eq!(statement.at(&["Effect"]).text(), "Allow");
            assert_eq!(
                s3.len(),
                actions.len(),
                "{}: keep S3 actions in statements of their own",
                function.id
            );
            for resource in one_or_many(statement.at(&["Resource"])) {
                let rest = upload_bucket_arn_rest(&template, resource);
                assert!(
                    rest.is_some_and(|rest| rest.starts_with('/') && rest.ends_with('*')),
                    "{}: {actions:?} must be granted on the upload bucket's objects \
                     (arn:${{AWS::Partition}}:s3:::${{Bucket}}/...*), not {resource:?}",
                    function.id
                );
            }
            granted.extend(actions);
        }
        assert_eq!(
            granted,
            s3_actions(handler),
            "{}: S3 actions granted to its role",
            function.id
        );
    }
}

#[test]
fn only_the_upload_bucket_may_invoke_the_s3_functions() {
    let template = template();
    let permissions = resources(&template, "AWS::Lambda::Permission");
    for handler in S3_FUNCTIONS {
        let function = function(&template, handler);
        let mine: Vec<_> = permissions
            .iter()
            .map(|(_, p)| p.at(&["Properties"]))
            .filter(|p| {
                let target = p.at(&["FunctionName"]);
                ref_target(target) == Some(function.id)
                    || get_att(target) == Some((function.id, "Arn"))
            })
            .collect();
        assert_eq!(
            mine.len(),
            1,
            "{}: expected one invoke permission",
            function.id
        );
        let permission = mine[0];
        assert_eq!(permission.at(&["Principal"]).text(), "s3.amazonaws.com");
        assert_eq!(
            ref_target(permission.at(&["SourceAccount"])),
            Some("AWS::AccountId"),
            "{}: bucket names are global; SourceAccount keeps another account's \
             bucket of the same name out",
            function.id
        );
        assert_eq!(
            upload_bucket_arn_rest(&template, permission.at(&["SourceArn"])),
            Some(""),
            "{}: SourceArn must be the upload bucket",
            function.id
        );
    }
}

#[test]
fn s3_failures_go_to_an_alarmed_queue_the_function_may_write() {
    let template = template();
    let configs = resources(&template, "AWS::Lambda::EventInvokeConfig");
    let alarms = resources(&template, "AWS::CloudWatch::Alarm");
    for handler in S3_FUNCTIONS {
        let function = function(&template, handler);
        let mine: Vec<_> = configs
            .iter()
            .map(|(_, c)| c.at(&["Properties"]))
            .filter(|c| ref_target(c.at(&["FunctionName"])) == Some(function.id))
            .collect();
        assert_eq!(
            mine.len(),
            1,
            "{}: expected one EventInvokeConfig",
            function.id
        );
        let config = mine[0];
        let retries: u32 = config.at(&["MaximumRetryAttempts"]).text().parse().unwrap();
        assert!(
            retries <= 2,
            "{}: Lambda allows 0 to 2 retries",
            function.id
        );
        let destination = config.at(&["DestinationConfig", "OnFailure", "Destination"]);
        let Some((queue, "Arn")) = get_att(destination) else {
            panic!(
                "{}: the on-failure destination is not a queue's Arn",
                function.id
            );
        };
        assert_eq!(
            template.at(&["Resources", queue, "Type"]).text(),
            "AWS::SQS::Queue"
        );
        assert!(
            role_statements(&template, &function).iter().any(|s| {
                s.at(&["Effect"]).text() == "Allow"
                    && actions(s).contains(&"sqs:SendMessage")
                    && one_or_many(s.at(&["Resource"])).contains(&destination)
            }),
            "{}: Lambda sends failed events with the function's role, which needs \
             sqs:SendMessage on {queue}",
            function.id
        );
        let watched = alarms.iter().any(|(_, alarm)| {
            alarm.at(&["Properties", "Namespace"]).text() == "AWS/SQS"
                && one_or_many(alarm.at(&["Properties", "Dimensions"]))
                    .iter()
                    .any(|d| get_att(d.at(&["Value"])) == Some((queue, "QueueName")))
        });
        assert!(watched, "{}: no alarm watches {queue}", function.id);
    }
}

/// `!If [<condition>, <then>, <else>]`: the condition's name and both branches.
fn if_parts(node: &Node) -> Option<(&str, &Node, &Node)> {
    match node.intrinsic() {
        Some(("Fn::If", Node::List(args))) if args.len() == 3 => {
            Some((args[0].text(), &args[1], &args[2]))
        }
        _ => None,
    }
}

fn is_no_value(node: &Node) -> bool {
    ref_target(node) == Some("AWS::NoValue")
}

/// The parameter a condition tests for being set: `!Not [!Equals [!Ref P, ""]]`.
fn parameter_set<'a>(template: &'a Node, condition: &str) -> Option<&'a str> {
    let Some(("Fn::Not", Node::List(not))) = template.at(&["Conditions", condition]).intrinsic()
    else {
        return None;
    };
    let Some(("Fn::Equals", Node::List(operands))) = not[0].intrinsic() else {
        return None;
    };
    match operands.as_slice() {
        [p, Node::Scalar(empty)] | [Node::Scalar(empty), p] if empty.is_empty() => ref_target(p),
        _ => None,
    }
}

/// Every queue is encrypted whatever the parameters: with the KMS key when
/// one is given, else with SQS-managed keys, never neither and never both.
#[test]
fn every_queue_is_encrypted() {
    let template = template();
    let queues = resources(&template, "AWS::SQS::Queue");
    assert!(queues.len() >= 4, "the queues: {}", queues.len());
    for (id, queue) in queues {
        let properties = queue.at(&["Properties"]);
        let (Some(kms), Some(sse)) = (
            properties.get("KmsMasterKeyId").and_then(if_parts),
            properties.get("SqsManagedSseEnabled").and_then(if_parts),
        ) else {
            panic!("{id}: KmsMasterKeyId and SqsManagedSseEnabled must both be !If on the key");
        };
        assert_eq!(kms.0, sse.0, "{id}: one condition for both");
        let parameter = parameter_set(&template, kms.0)
            .unwrap_or_else(|| panic!("{id}: {} does not test a parameter", kms.0));
        assert_eq!(
            template.at(&["Parameters", parameter, "Default"]).text(),
            ""
        );
        assert_eq!(ref_target(kms.1), Some(parameter), "{id}: the key when set");
        assert!(
            is_no_value(kms.2) && is_no_value(sse.1),
            "{id}: one or the other"
        );
        assert_eq!(
            sse.2,
            &Node::Scalar("true".into()),
            "{id}: SSE-SQS otherwise"
        );
    }
}

/// With a KMS key on the queues, each function's role may use it as it must:
/// the recorder decrypts what it receives, the S3 functions encrypt what they
/// send to their failure queue.
#[test]
fn roles_may_use_the_queue_key() {
    let template = template();
    let (_, queue) = resources(&template, "AWS::SQS::Queue")[0];
    let (_, key, _) = if_parts(queue.at(&["Properties", "KmsMasterKeyId"])).unwrap();
    for function in functions(&template) {
        let needed: &[&str] = match function.handler {
            Handler::Sqs => &["kms:Decrypt"],
            _ => &["kms:GenerateDataKey", "kms:Decrypt"],
        };
        let granted = role_statements(&template, &function).into_iter().any(|s| {
            s.at(&["Effect"]).text() == "Allow"
                && one_or_many(s.at(&["Resource"])).contains(&key)
                && needed.iter().all(|a| actions(s).contains(a))
        });
        assert!(granted, "{}: no {needed:?} on the queue key", function.id);
    }
}

#[test]
fn log_groups_keep_logs_for_a_while_and_may_use_a_kms_key() {
    let template = template();
    let groups = resources(&template, "AWS::Logs::LogGroup");
    assert_eq!(groups.len(), functions(&template).len());
    for (id, group) in groups {
        let properties = group.at(&["Properties"]);
        assert_eq!(
            ref_target(properties.at(&["RetentionInDays"])),
            Some("LogRetentionInDays"),
            "{id}"
        );
        let (condition, key, none) = if_parts(properties.at(&["KmsKeyId"]))
            .unwrap_or_else(|| panic!("{id}: KmsKeyId is not optional"));
        let parameter = parameter_set(&template, condition).unwrap();
        assert_eq!(ref_target(key), Some(parameter), "{id}");
        assert!(is_no_value(none), "{id}");
        assert_eq!(
            template.at(&["Parameters", parameter, "Default"]).text(),
            ""
        );
    }
}

/// The recorder's reserved concurrency is a parameter; unset, none is reserved.
#[test]
fn recorder_reserved_concurrency_is_optional() {
    let template = template();
    let recorder = function(&template, Handler::Sqs);
    let (condition, value, unset) = if_parts(
        recorder
            .resource
            .at(&["Properties", "ReservedConcurrentExecutions"]),
    )
    .expect("ReservedConcurrentExecutions: !If [..]");
    let parameter = parameter_set(&template, condition).unwrap();
    assert_eq!(ref_target(value), Some(parameter));
    assert!(is_no_value(unset));
    assert_eq!(
        template.at(&["Parameters", parameter, "Default"]).text(),
        ""
    );
}

/// Code signing is optional (a parameter, empty by default) and, when set,
/// enforced on every function by one code signing configuration that trusts
/// that signing profile version only.
#[test]
fn code_signing_is_optional_and_enforced_on_every_function() {
    let template = template();
    let (config_id, config) = resource(&template, "AWS::Lambda::CodeSigningConfig");
    let condition = config.at(&["Condition"]).text();
    let parameter = parameter_set(&template, condition)
        .unwrap_or_else(|| panic!("{config_id}: {condition} does not test a parameter"));
    assert_eq!(
        template.at(&["Parameters", parameter, "Default"]).text(),
        ""
    );
    let properties = config.at(&["Properties"]);
    assert_eq!(
        properties
            .at(&["CodeSigningPolicies", "UntrustedArtifactOnDeployment"])
            .text(),
        "Enforce"
    );
    let publishers =
        one_or_many(properties.at(&["AllowedPublishers", "SigningProfileVersionArns"]));
    assert_eq!(
        publishers.len(),
        1,
        "{config_id}: one signing profile version"
    );
    assert_eq!(ref_target(publishers[0]), Some(parameter));
    for function in functions(&template) {
        let (c, arn, unset) = if_parts(
            function
                .resource
                .at(&["Properties", "CodeSigningConfigArn"]),
        )
        .unwrap_or_else(|| panic!("{}: CodeSigningConfigArn is not !If [..]", function.id));
        assert_eq!(c, condition, "{}", function.id);
        assert_eq!(
            get_att(arn),
            Some((config_id, "CodeSigningConfigArn")),
            "{}",
            function.id
        );
        assert!(is_no_value(unset), "{}", function.id);
    }
}

/// The recorder's summary line, which carries its metrics, is INFO: Lambda
/// would drop it at a higher application log level.
#[test]
fn the_log_level_keeps_the_summary_line() {
    let template = template();
    let Node::List(levels) = template.at(&["Parameters", "ApplicationLogLevel", "AllowedValues"])
    else {
        panic!("ApplicationLogLevel has no AllowedValues list");
    };
    for level in levels {
        assert!(
            ["TRACE", "DEBUG", "INFO"].contains(&level.text()),
            "ApplicationLogLevel allows {}, which drops the summary and its metrics",
            level.text()
        );
    }
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
