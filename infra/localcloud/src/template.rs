//! Reading template.yaml the way CloudFormation and SAM would, for the parts the local cloud
//! emulates.
//!
//! Intrinsics are resolved lazily: only the properties the local cloud uses (table definitions,
//! function environments, authorizer settings) are resolved, so an intrinsic in, say, an alarm
//! never matters here. Supported: `Ref` (parameters, pseudo parameters, resources), `Fn::GetAtt`,
//! `Fn::Sub` (both forms), `Fn::Join`, `Fn::Select`, in short (`!Ref`) and long form. Anything
//! else fails with the name of the resource and property it appeared in.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use anyhow::{Context as _, anyhow, bail};
use serde_json::Value as Json;
use serde_norway::Value as Yaml;

use crate::filter::Filters;

/// The account id the emulators use (moto's default).
pub const ACCOUNT_ID: &str = "123456789012";

/// A parsed template with its parameters' values.
#[derive(Debug, Clone)]
pub struct Template {
    resources: BTreeMap<String, Yaml>,
    globals_function: Option<Yaml>,
    parameters: BTreeMap<String, String>,
}

/// Names and attributes of resources as they exist in the emulator, for `Ref` and `GetAtt`.
#[derive(Debug, Clone, Default)]
pub struct Physical {
    pub refs: HashMap<String, String>,
    pub attributes: HashMap<(String, String), String>,
}

/// Where the stack lives: the values of pseudo parameters.
#[derive(Debug, Clone)]
pub struct Stack {
    pub name: String,
    pub region: String,
    /// The emulator's URL: SQS queue URLs (a queue's `Ref`) are built on it.
    pub endpoint: String,
}

/// A DynamoDB table to provision.
#[derive(Debug, Clone)]
pub struct TableSpec {
    pub logical_id: String,
    pub name: String,
    /// The resolved `Properties` of the `AWS::DynamoDB::Table`.
    pub properties: Json,
}

/// A Lambda function to run.
#[derive(Debug, Clone)]
pub struct FunctionSpec {
    pub logical_id: String,
    pub name: String,
    /// The binary cargo builds for it (`Metadata.BuildProperties.Binary`).
    pub binary: String,
    pub timeout_secs: u64,
    pub memory_mb: u64,
    pub environment: BTreeMap<String, String>,
    pub log_format: Option<String>,
    pub log_level: Option<String>,
    pub routes: Vec<RouteSpec>,
    pub triggers: Vec<TriggerSpec>,
    /// The resolved SAM `Policies` (the local cloud does not enforce IAM; tests read them).
    pub policies: Json,
}

/// An SQS queue to provision.
#[derive(Debug, Clone)]
pub struct QueueSpec {
    pub logical_id: String,
    pub name: String,
    pub properties: Json,
}

/// A Secrets Manager secret to provision.
#[derive(Debug, Clone)]
pub struct SecretSpec {
    pub logical_id: String,
    pub name: String,
    pub properties: Json,
}

/// An EventBridge bus to provision.
#[derive(Debug, Clone)]
pub struct BusSpec {
    pub logical_id: String,
    pub name: String,
}

/// An EventBridge rule with its targets.
#[derive(Debug, Clone)]
pub struct RuleSpec {
    pub logical_id: String,
    pub name: String,
    /// The bus name (`default` when the rule names none).
    pub bus: String,
    pub properties: Json,
}

/// How events reach a function other than through the HTTP API (SAM `Events`).
#[derive(Debug, Clone, PartialEq)]
pub enum TriggerSpec {
    /// `Type: SQS`: an event source mapping polling a queue.
    Sqs { event: String, queue_arn: String, batch_size: usize, report_failures: bool, filters: Filters },
    /// `Type: DynamoDB`: an event source mapping reading a table's stream.
    Stream {
        event: String,
        stream_arn: String,
        batch_size: usize,
        report_failures: bool,
        from_start: bool,
        /// `MaximumRetryAttempts`; -1 retries until the record expires.
        max_retries: i64,
        /// `DestinationConfig.OnFailure.Destination`: the SQS queue (ARN) told about a batch
        /// skipped after `max_retries`.
        on_failure: Option<String>,
        filters: Filters,
    },
    /// `Type: Schedule` / `ScheduleV2`: a timer.
    Schedule { event: String, expression: String, enabled: bool },
}

/// One `HttpApi` event of a function.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteSpec {
    /// Upper-case method, or `ANY`.
    pub method: String,
    pub path: String,
    /// The authorizer guarding the route; `None` for `Authorizer: NONE`.
    pub authorizer: Option<String>,
}

impl RouteSpec {
    /// The API Gateway route key: `GET /products/{id}`.
    pub fn key(&self) -> String {
        format!("{} {}", self.method, self.path)
    }
}

/// A JWT authorizer of the HTTP API.
#[derive(Debug, Clone)]
pub struct JwtAuthorizerSpec {
    pub name: String,
    pub issuer: String,
    pub audience: Vec<String>,
    pub identity_source: String,
}

/// The HTTP API: its authorizers and the default one, and its CORS configuration.
#[derive(Debug, Clone)]
pub struct HttpApiSpec {
    pub logical_id: String,
    pub default_authorizer: Option<String>,
    pub authorizers: Vec<JwtAuthorizerSpec>,
    pub cors: Option<CorsSpec>,
}

/// An HTTP API's `CorsConfiguration`. Header names are lower case; `*` allows any.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CorsSpec {
    pub allow_origins: Vec<String>,
    pub allow_methods: Vec<String>,
    pub allow_headers: Vec<String>,
    pub expose_headers: Vec<String>,
    pub max_age: Option<u64>,
    pub allow_credentials: bool,
}

impl CorsSpec {
    /// SAM's forms: `true` (any origin), a string (the origins, comma-separated) or an object.
    fn parse(config: &Json, location: &str) -> anyhow::Result<Option<Self>> {
        // A list, or the comma-delimited text a CommaDelimitedList parameter may resolve to.
        let split = |text: &str| text.split(',').map(|item| item.trim().to_owned()).collect::<Vec<_>>();
        let list = |key: &str| -> Vec<String> {
            match config.get(key) {
                Some(Json::Array(items)) => items.iter().map(json_scalar).collect(),
                Some(Json::String(text)) => split(text),
                _ => Vec::new(),
            }
        };
        let spec = match config {
            Json::Bool(true) => Self { allow_origins: vec!["*".into()], ..Self::default() },
            Json::String(origins) => Self { allow_origins: split(origins), ..Self::default() },
            Json::Object(_) => Self {
                allow_origins: list("AllowOrigins"),
                allow_methods: list("AllowMethods").into_iter().map(|m| m.to_uppercase()).collect(),
                allow_headers: list("AllowHeaders").into_iter().map(|h| h.to_lowercase()).collect(),
                expose_headers: list("ExposeHeaders").into_iter().map(|h| h.to_lowercase()).collect(),
                max_age: config.get("MaxAge").and_then(|v| v.as_u64().or_else(|| v.as_str()?.parse().ok())),
                allow_credentials: config
                    .get("AllowCredentials")
                    .and_then(|v| v.as_bool().or_else(|| v.as_str()?.parse().ok()))
                    .unwrap_or(false),
            },
            _ => return Ok(None),
        };
        if spec.allow_credentials && spec.allow_origins.iter().any(|origin| origin == "*") {
            // SAM refuses this at deploy: fail here too rather than work only locally.
            bail!("{location}: AllowCredentials cannot be true when AllowOrigins is '*'");
        }
        Ok(Some(spec))
    }
}

/// Resource types the local cloud provisions or runs.
const EMULATED: &[&str] = &[
    "AWS::DynamoDB::Table",
    "AWS::Serverless::Function",
    "AWS::Serverless::HttpApi",
    "AWS::SQS::Queue",
    "AWS::Events::EventBus",
    "AWS::Events::Rule",
    "AWS::SecretsManager::Secret",
];
/// Resource types that have no local behaviour: identity is emulated by the local JWT
/// authorizer, logs go to the terminal, alarms, the dashboard, their SNS topic and IAM exist
/// only in AWS.
const ACCEPTED: &[&str] = &[
    "AWS::Cognito::UserPool",
    "AWS::Cognito::UserPoolClient",
    "AWS::Cognito::UserPoolGroup",
    "AWS::Logs::LogGroup",
    "AWS::CloudWatch::Alarm",
    "AWS::CloudWatch::Dashboard",
    "AWS::IAM::Role",
    "AWS::IAM::Policy",
    "AWS::SQS::QueuePolicy",
    "AWS::Lambda::Permission",
    "AWS::SNS::Topic",
    "AWS::SNS::Subscription",
    // The managed login domain and the storefront's hosting (S3 + CloudFront): `make dev` serves
    // the storefront itself (site.rs) and signs in locally.
    "AWS::Cognito::UserPoolDomain",
    "AWS::S3::Bucket",
    "AWS::S3::BucketPolicy",
    "AWS::CloudFront::Distribution",
    "AWS::CloudFront::OriginAccessControl",
    "AWS::CloudFront::CachePolicy",
    "AWS::CloudFront::ResponseHeadersPolicy",
];

impl Template {
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        Self::parse(&text).with_context(|| format!("parsing {}", path.display()))
    }

    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let root: Yaml = serde_norway::from_str(text)?;
        let resources: BTreeMap<String, Yaml> = root
            .get("Resources")
            .cloned()
            .map(serde_norway::from_value)
            .transpose()?
            .ok_or_else(|| anyhow!("the template has no Resources"))?;
        let mut parameters = BTreeMap::new();
        if let Some(Yaml::Mapping(declared)) = root.get("Parameters") {
            for (name, declaration) in declared {
                let name = name.as_str().ok_or_else(|| anyhow!("a parameter name is not a string"))?;
                if let Some(default) = declaration.get("Default") {
                    parameters.insert(name.to_owned(), scalar_string(default).unwrap_or_default());
                }
            }
        }
        for (logical_id, resource) in &resources {
            let kind = resource.get("Type").and_then(Yaml::as_str).unwrap_or("");
            if !EMULATED.contains(&kind) && !ACCEPTED.contains(&kind) {
                bail!("resource {logical_id} has type {kind}, which the local cloud does not support yet");
            }
        }
        let globals_function = root.get("Globals").and_then(|g| g.get("Function")).cloned();
        Ok(Self { resources, globals_function, parameters })
    }

    /// Overrides a parameter, as `sam deploy --parameter-overrides` would.
    pub fn set_parameter(&mut self, name: &str, value: &str) {
        self.parameters.insert(name.to_owned(), value.to_owned());
    }

    fn of_type<'a>(&'a self, kind: &'a str) -> impl Iterator<Item = (&'a String, &'a Yaml)> + 'a {
        self.resources.iter().filter(move |(_, resource)| resource.get("Type").and_then(Yaml::as_str) == Some(kind))
    }

    /// Physical ids of everything that exists before provisioning (names are chosen, not
    /// assigned): `{stack}-{LogicalId}`, as CloudFormation's generated names begin.
    pub fn physical_names(&self, stack: &Stack) -> Physical {
        let mut physical = Physical::default();
        for (logical_id, resource) in &self.resources {
            let kind = resource.get("Type").and_then(Yaml::as_str).unwrap_or("");
            let properties = resource.get("Properties");
            // An explicit name may be a plain string or a `!Sub` of pseudo parameters.
            let explicit = |key: &str| {
                let value = properties.and_then(|p| p.get(key))?;
                match value {
                    Yaml::String(name) => Some(name.clone()),
                    Yaml::Tagged(tagged) if tagged.tag == "Sub" => {
                        let text = tagged.value.as_str()?;
                        Some(
                            text.replace("${AWS::StackName}", &stack.name)
                                .replace("${AWS::Region}", &stack.region)
                                .replace("${AWS::AccountId}", ACCOUNT_ID),
                        )
                    }
                    _ => None,
                }
            };
            let name = match kind {
                "AWS::DynamoDB::Table" => {
                    explicit("TableName").unwrap_or_else(|| format!("{}-{logical_id}", stack.name))
                }
                "AWS::Cognito::UserPool" => format!("{}_{}local", stack.region, stack.name),
                "AWS::Cognito::UserPoolGroup" => explicit("GroupName").unwrap_or_else(|| logical_id.clone()),
                "AWS::Serverless::HttpApi" => "local".to_owned(),
                "AWS::SQS::Queue" => explicit("QueueName").unwrap_or_else(|| {
                    let fifo = properties.and_then(|p| p.get("FifoQueue")).and_then(Yaml::as_bool) == Some(true);
                    format!("{}-{logical_id}{}", stack.name, if fifo { ".fifo" } else { "" })
                }),
                "AWS::Events::EventBus" => explicit("Name").unwrap_or_else(|| format!("{}-{logical_id}", stack.name)),
                "AWS::Events::Rule" => explicit("Name").unwrap_or_else(|| format!("{}-{logical_id}", stack.name)),
                _ => format!("{}-{logical_id}", stack.name),
            };
            let arn = match kind {
                "AWS::DynamoDB::Table" => Some(format!("arn:aws:dynamodb:{}:{ACCOUNT_ID}:table/{name}", stack.region)),
                "AWS::Serverless::Function" => {
                    Some(format!("arn:aws:lambda:{}:{ACCOUNT_ID}:function:{name}", stack.region))
                }
                "AWS::Logs::LogGroup" => Some(format!("arn:aws:logs:{}:{ACCOUNT_ID}:log-group:{name}", stack.region)),
                "AWS::Cognito::UserPool" => {
                    Some(format!("arn:aws:cognito-idp:{}:{ACCOUNT_ID}:userpool/{name}", stack.region))
                }
                "AWS::SQS::Queue" => Some(format!("arn:aws:sqs:{}:{ACCOUNT_ID}:{name}", stack.region)),
                "AWS::Events::EventBus" => {
                    Some(format!("arn:aws:events:{}:{ACCOUNT_ID}:event-bus/{name}", stack.region))
                }
                "AWS::Events::Rule" => Some(format!("arn:aws:events:{}:{ACCOUNT_ID}:rule/{name}", stack.region)),
                _ => None,
            };
            if let Some(arn) = arn {
                physical.attributes.insert((logical_id.clone(), "Arn".to_owned()), arn);
            }
            let reference = match kind {
                // A queue's Ref is its URL; moto builds URLs on the host the request went to.
                "AWS::SQS::Queue" => {
                    physical.attributes.insert((logical_id.clone(), "QueueName".to_owned()), name.clone());
                    let url = format!("{}/{ACCOUNT_ID}/{name}", stack.endpoint.trim_end_matches('/'));
                    physical.attributes.insert((logical_id.clone(), "QueueUrl".to_owned()), url.clone());
                    url
                }
                "AWS::Events::EventBus" => {
                    physical.attributes.insert((logical_id.clone(), "Name".to_owned()), name.clone());
                    name
                }
                _ => name,
            };
            physical.refs.insert(logical_id.clone(), reference);
        }
        physical
    }

    fn resolver<'a>(&'a self, stack: &'a Stack, physical: &'a Physical) -> Resolver<'a> {
        Resolver { template: self, stack, physical }
    }

    pub fn tables(&self, stack: &Stack, physical: &Physical) -> anyhow::Result<Vec<TableSpec>> {
        let resolver = self.resolver(stack, physical);
        self.of_type("AWS::DynamoDB::Table")
            .map(|(logical_id, resource)| {
                let properties = resolver.resolve_at(resource.get("Properties"), logical_id, "Properties")?;
                let name = physical.refs.get(logical_id).cloned().unwrap_or_default();
                Ok(TableSpec { logical_id: logical_id.clone(), name, properties })
            })
            .collect()
    }

    pub fn queues(&self, stack: &Stack, physical: &Physical) -> anyhow::Result<Vec<QueueSpec>> {
        let resolver = self.resolver(stack, physical);
        self.of_type("AWS::SQS::Queue")
            .map(|(logical_id, resource)| {
                let properties = resolver.resolve_at(resource.get("Properties"), logical_id, "Properties")?;
                let name =
                    physical.attributes.get(&(logical_id.clone(), "QueueName".to_owned())).cloned().unwrap_or_default();
                Ok(QueueSpec { logical_id: logical_id.clone(), name, properties })
            })
            .collect()
    }

    pub fn secrets(&self, stack: &Stack, physical: &Physical) -> anyhow::Result<Vec<SecretSpec>> {
        let resolver = self.resolver(stack, physical);
        self.of_type("AWS::SecretsManager::Secret")
            .map(|(logical_id, resource)| {
                let properties = resolver.resolve_at(resource.get("Properties"), logical_id, "Properties")?;
                let name = properties
                    .get("Name")
                    .and_then(Json::as_str)
                    .map(str::to_owned)
                    .unwrap_or_else(|| format!("{}-{logical_id}", stack.name));
                Ok(SecretSpec { logical_id: logical_id.clone(), name, properties })
            })
            .collect()
    }

    pub fn buses(&self, physical: &Physical) -> Vec<BusSpec> {
        self.of_type("AWS::Events::EventBus")
            .map(|(logical_id, _)| BusSpec {
                logical_id: logical_id.clone(),
                name: physical.refs.get(logical_id).cloned().unwrap_or_default(),
            })
            .collect()
    }

    pub fn rules(&self, stack: &Stack, physical: &Physical) -> anyhow::Result<Vec<RuleSpec>> {
        let resolver = self.resolver(stack, physical);
        self.of_type("AWS::Events::Rule")
            .map(|(logical_id, resource)| {
                let properties = resolver.resolve_at(resource.get("Properties"), logical_id, "Properties")?;
                // EventBusName may be a name or an ARN; the API takes either, we keep the name.
                let bus = properties
                    .get("EventBusName")
                    .and_then(Json::as_str)
                    .map(|bus| bus.rsplit('/').next().unwrap_or(bus).to_owned())
                    .unwrap_or_else(|| "default".to_owned());
                Ok(RuleSpec {
                    logical_id: logical_id.clone(),
                    name: physical.refs.get(logical_id).cloned().unwrap_or_default(),
                    bus,
                    properties,
                })
            })
            .collect()
    }

    pub fn functions(&self, stack: &Stack, physical: &Physical) -> anyhow::Result<Vec<FunctionSpec>> {
        let resolver = self.resolver(stack, physical);
        let globals = resolver.resolve_at(self.globals_function.as_ref(), "Globals", "Function")?;
        self.of_type("AWS::Serverless::Function")
            .map(|(logical_id, resource)| {
                let own = resolver.resolve_at(resource.get("Properties"), logical_id, "Properties")?;
                let property = |key: &str| own.get(key).or_else(|| globals.get(key));
                let mut environment = BTreeMap::new();
                for source in [&globals, &own] {
                    if let Some(Json::Object(variables)) = source.pointer("/Environment/Variables") {
                        for (name, value) in variables {
                            environment.insert(name.clone(), json_scalar(value));
                        }
                    }
                }
                let binary = resource
                    .get("Metadata")
                    .and_then(|m| m.get("BuildProperties"))
                    .and_then(|b| b.get("Binary"))
                    .and_then(Yaml::as_str)
                    .map(str::to_owned)
                    .ok_or_else(|| anyhow!("function {logical_id} has no Metadata.BuildProperties.Binary"))?;
                let routes = routes_of(resource, logical_id)?;
                let events = resolver.resolve_at(
                    resource.get("Properties").and_then(|p| p.get("Events")),
                    logical_id,
                    "Events",
                )?;
                let triggers = triggers_of(&events, logical_id)?;
                Ok(FunctionSpec {
                    logical_id: logical_id.clone(),
                    name: physical.refs.get(logical_id).cloned().unwrap_or_default(),
                    binary,
                    timeout_secs: property("Timeout").and_then(Json::as_u64).unwrap_or(3),
                    memory_mb: property("MemorySize").and_then(Json::as_u64).unwrap_or(128),
                    environment,
                    log_format: property("LoggingConfig")
                        .and_then(|c| c.get("LogFormat"))
                        .and_then(Json::as_str)
                        .map(str::to_owned),
                    log_level: property("LoggingConfig")
                        .and_then(|c| c.get("ApplicationLogLevel"))
                        .and_then(Json::as_str)
                        .map(str::to_owned),
                    routes,
                    triggers,
                    policies: own.get("Policies").cloned().unwrap_or(Json::Null),
                })
            })
            .collect()
    }

    /// The HTTP API (the first `AWS::Serverless::HttpApi`), with its JWT authorizers.
    pub fn http_api(&self, stack: &Stack, physical: &Physical) -> anyhow::Result<Option<HttpApiSpec>> {
        let resolver = self.resolver(stack, physical);
        let Some((logical_id, resource)) = self.of_type("AWS::Serverless::HttpApi").next() else {
            return Ok(None);
        };
        let auth = resolver.resolve_at(resource.get("Properties").and_then(|p| p.get("Auth")), logical_id, "Auth")?;
        let mut authorizers = Vec::new();
        if let Some(Json::Object(declared)) = auth.get("Authorizers") {
            for (name, declaration) in declared {
                let jwt = declaration
                    .get("JwtConfiguration")
                    .ok_or_else(|| anyhow!("authorizer {name} of {logical_id}: only JWT authorizers are emulated"))?;
                let issuer = jwt.get("issuer").and_then(Json::as_str).unwrap_or_default().to_owned();
                let audience = jwt
                    .get("audience")
                    .and_then(Json::as_array)
                    .map(|list| list.iter().map(json_scalar).collect())
                    .unwrap_or_default();
                let identity_source = declaration
                    .get("IdentitySource")
                    .and_then(Json::as_str)
                    .unwrap_or("$request.header.Authorization")
                    .to_owned();
                authorizers.push(JwtAuthorizerSpec { name: name.clone(), issuer, audience, identity_source });
            }
        }
        let default_authorizer = auth.get("DefaultAuthorizer").and_then(Json::as_str).map(str::to_owned);
        let cors = resolver.resolve_at(
            resource.get("Properties").and_then(|p| p.get("CorsConfiguration")),
            logical_id,
            "Cors",
        )?;
        Ok(Some(HttpApiSpec {
            logical_id: logical_id.clone(),
            default_authorizer,
            authorizers,
            cors: CorsSpec::parse(&cors, &format!("{logical_id}.CorsConfiguration"))?,
        }))
    }
}

fn routes_of(resource: &Yaml, logical_id: &str) -> anyhow::Result<Vec<RouteSpec>> {
    let mut routes = Vec::new();
    let Some(Yaml::Mapping(events)) = resource.get("Properties").and_then(|p| p.get("Events")) else {
        return Ok(routes);
    };
    for (name, event) in events {
        if event.get("Type").and_then(Yaml::as_str) != Some("HttpApi") {
            continue;
        }
        let properties = event.get("Properties");
        let text = |key: &str| properties.and_then(|p| p.get(key)).and_then(Yaml::as_str);
        let event_name = name.as_str().unwrap_or("?");
        let path = text("Path").unwrap_or("$default").to_owned();
        let method = text("Method").unwrap_or("ANY").to_uppercase();
        let authorizer = match properties.and_then(|p| p.get("Auth")).and_then(|a| a.get("Authorizer")) {
            None => Some(String::new()), // the API's default authorizer, if any
            Some(value) => match value.as_str() {
                Some("NONE") => None,
                Some(named) => Some(named.to_owned()),
                None => bail!("{logical_id}.Events.{event_name}: Auth.Authorizer must be a name or NONE"),
            },
        };
        routes.push(RouteSpec { method, path, authorizer });
    }
    Ok(routes)
}

fn triggers_of(events: &Json, logical_id: &str) -> anyhow::Result<Vec<TriggerSpec>> {
    let mut triggers = Vec::new();
    let Some(events) = events.as_object() else {
        return Ok(triggers);
    };
    for (name, event) in events {
        let properties = event.get("Properties").cloned().unwrap_or(Json::Null);
        let text = |key: &str| properties.get(key).and_then(Json::as_str).map(str::to_owned);
        let number = |key: &str| properties.get(key).and_then(|v| v.as_i64().or_else(|| v.as_str()?.parse().ok()));
        let report_failures = properties
            .get("FunctionResponseTypes")
            .and_then(Json::as_array)
            .is_some_and(|types| types.iter().any(|t| t.as_str() == Some("ReportBatchItemFailures")));
        let location = || format!("{logical_id}.Events.{name}");
        match event.get("Type").and_then(Json::as_str) {
            Some("SQS") => triggers.push(TriggerSpec::Sqs {
                event: name.clone(),
                queue_arn: text("Queue").ok_or_else(|| anyhow!("{}: SQS event needs Queue", location()))?,
                batch_size: usize::try_from(number("BatchSize").unwrap_or(10)).unwrap_or(10).clamp(1, 10),
                report_failures,
                filters: Filters::parse(properties.get("FilterCriteria"), &location())?,
            }),
            Some("DynamoDB") => triggers.push(TriggerSpec::Stream {
                event: name.clone(),
                stream_arn: text("Stream").ok_or_else(|| anyhow!("{}: DynamoDB event needs Stream", location()))?,
                batch_size: usize::try_from(number("BatchSize").unwrap_or(100)).unwrap_or(100).clamp(1, 1000),
                report_failures,
                from_start: text("StartingPosition").as_deref() != Some("LATEST"),
                max_retries: number("MaximumRetryAttempts").unwrap_or(-1),
                on_failure: on_failure_queue(&properties, &location())?,
                filters: Filters::parse(properties.get("FilterCriteria"), &location())?,
            }),
            Some("Schedule" | "ScheduleV2") => triggers.push(TriggerSpec::Schedule {
                event: name.clone(),
                expression: text("Schedule")
                    .or_else(|| text("ScheduleExpression"))
                    .ok_or_else(|| anyhow!("{}: a schedule needs an expression", location()))?,
                enabled: properties.get("Enabled").and_then(Json::as_bool).unwrap_or(true)
                    && text("State").as_deref() != Some("DISABLED"),
            }),
            Some("HttpApi") => {}
            other => bail!("{}: event type {other:?} is not supported by the local cloud", location()),
        }
    }
    Ok(triggers)
}

/// The SQS queue ARN of a stream mapping's `DestinationConfig.OnFailure`; SNS, S3 and Kafka
/// destinations are refused by name, since they are not emulated.
fn on_failure_queue(properties: &Json, location: &str) -> anyhow::Result<Option<String>> {
    let Some(on_failure) = properties.get("DestinationConfig").and_then(|d| d.get("OnFailure")) else {
        return Ok(None);
    };
    match on_failure.get("Destination").and_then(Json::as_str) {
        Some(arn) if arn.starts_with("arn:aws:sqs:") => Ok(Some(arn.to_owned())),
        other => bail!(
            "{location}: OnFailure destination {other:?} is not an SQS queue, the only kind the local cloud emulates"
        ),
    }
}

/// A YAML scalar as CloudFormation would pass it on: strings as they are, numbers and booleans
/// in their text form.
fn scalar_string(value: &Yaml) -> Option<String> {
    match value {
        Yaml::String(s) => Some(s.clone()),
        Yaml::Number(n) => Some(n.to_string()),
        Yaml::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn json_scalar(value: &Json) -> String {
    match value {
        Json::String(s) => s.clone(),
        other => other.to_string(),
    }
}

struct Resolver<'a> {
    template: &'a Template,
    stack: &'a Stack,
    physical: &'a Physical,
}

impl Resolver<'_> {
    fn resolve_at(&self, value: Option<&Yaml>, resource: &str, property: &str) -> anyhow::Result<Json> {
        match value {
            None => Ok(Json::Null),
            Some(value) => self.resolve(value).with_context(|| format!("in {resource}.{property}")),
        }
    }

    fn resolve(&self, value: &Yaml) -> anyhow::Result<Json> {
        Ok(match value {
            Yaml::Null => Json::Null,
            Yaml::Bool(b) => Json::Bool(*b),
            Yaml::Number(n) => serde_json::to_value(n)?,
            Yaml::String(s) => Json::String(s.clone()),
            Yaml::Sequence(items) => Json::Array(items.iter().map(|i| self.resolve(i)).collect::<Result<_, _>>()?),
            Yaml::Tagged(tagged) => {
                let tag = tagged.tag.to_string();
                let name = tag.trim_start_matches('!');
                let function = if name == "Ref" { "Ref".to_owned() } else { format!("Fn::{name}") };
                self.intrinsic(&function, &tagged.value)?
            }
            Yaml::Mapping(map) => {
                if map.len() == 1
                    && let Some((Yaml::String(key), argument)) = map.iter().next()
                    && (key == "Ref" || key.starts_with("Fn::"))
                {
                    return self.intrinsic(key, argument);
                }
                let mut object = serde_json::Map::new();
                for (key, value) in map {
                    let key = scalar_string(key).ok_or_else(|| anyhow!("a mapping key is not a scalar"))?;
                    object.insert(key, self.resolve(value)?);
                }
                Json::Object(object)
            }
        })
    }

    fn intrinsic(&self, function: &str, argument: &Yaml) -> anyhow::Result<Json> {
        match function {
            "Ref" => {
                let name = argument.as_str().ok_or_else(|| anyhow!("Ref needs a name"))?;
                self.reference(name)
            }
            "Fn::GetAtt" => {
                let (resource, attribute) = match argument {
                    Yaml::String(dotted) => dotted
                        .split_once('.')
                        .map(|(r, a)| (r.to_owned(), a.to_owned()))
                        .ok_or_else(|| anyhow!("GetAtt `{dotted}` needs Resource.Attribute"))?,
                    Yaml::Sequence(parts) if parts.len() == 2 => (
                        parts[0].as_str().unwrap_or_default().to_owned(),
                        parts[1].as_str().unwrap_or_default().to_owned(),
                    ),
                    _ => bail!("GetAtt needs Resource.Attribute"),
                };
                self.attribute(&resource, &attribute).map(Json::String)
            }
            "Fn::Sub" => {
                let (text, variables) = match argument {
                    Yaml::String(text) => (text.clone(), serde_json::Map::new()),
                    Yaml::Sequence(parts) if parts.len() == 2 => {
                        let text = parts[0].as_str().ok_or_else(|| anyhow!("Sub needs a string"))?.to_owned();
                        let Json::Object(variables) = self.resolve(&parts[1])? else {
                            bail!("Sub's second argument must be a mapping");
                        };
                        (text, variables)
                    }
                    _ => bail!("Sub needs a string or [string, variables]"),
                };
                self.substitute(&text, &variables).map(Json::String)
            }
            "Fn::Join" => {
                let Json::Array(parts) = self.resolve(argument)? else { bail!("Join needs [delimiter, list]") };
                let delimiter = parts.first().and_then(Json::as_str).unwrap_or_default();
                let list = parts.get(1).and_then(Json::as_array).cloned().unwrap_or_default();
                Ok(Json::String(list.iter().map(json_scalar).collect::<Vec<_>>().join(delimiter)))
            }
            "Fn::Select" => {
                let Json::Array(parts) = self.resolve(argument)? else { bail!("Select needs [index, list]") };
                let index = parts.first().map(json_scalar).and_then(|i| i.parse::<usize>().ok());
                let list = parts.get(1).and_then(Json::as_array);
                match (index, list) {
                    (Some(index), Some(list)) => {
                        list.get(index).cloned().ok_or_else(|| anyhow!("Select index out of range"))
                    }
                    _ => bail!("Select needs [index, list]"),
                }
            }
            other => bail!("the local cloud does not support the intrinsic {other}"),
        }
    }

    fn reference(&self, name: &str) -> anyhow::Result<Json> {
        let pseudo = match name {
            "AWS::Region" => Some(self.stack.region.clone()),
            "AWS::AccountId" => Some(ACCOUNT_ID.to_owned()),
            "AWS::StackName" => Some(self.stack.name.clone()),
            "AWS::Partition" => Some("aws".to_owned()),
            "AWS::URLSuffix" => Some("amazonaws.com".to_owned()),
            _ => None,
        };
        if let Some(value) = pseudo {
            return Ok(Json::String(value));
        }
        if let Some(value) = self.template.parameters.get(name) {
            // CommaDelimitedList parameters are lists wherever they are referenced.
            return Ok(Json::String(value.clone()));
        }
        self.physical
            .refs
            .get(name)
            .map(|value| Json::String(value.clone()))
            .ok_or_else(|| anyhow!("Ref to `{name}`, which is neither a parameter nor a resource"))
    }

    fn attribute(&self, resource: &str, attribute: &str) -> anyhow::Result<String> {
        self.physical
            .attributes
            .get(&(resource.to_owned(), attribute.to_owned()))
            .cloned()
            .ok_or_else(|| anyhow!("GetAtt {resource}.{attribute} is not available in the local cloud"))
    }

    fn substitute(&self, text: &str, variables: &serde_json::Map<String, Json>) -> anyhow::Result<String> {
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let end = after.find('}').ok_or_else(|| anyhow!("unclosed ${{ in Sub `{text}`"))?;
            let name = &after[..end];
            if let Some(literal) = name.strip_prefix('!') {
                out.push_str("${");
                out.push_str(literal);
                out.push('}');
            } else if let Some(value) = variables.get(name) {
                out.push_str(&json_scalar(value));
            } else if let Some((resource, attribute)) = name.split_once('.').filter(|_| !name.starts_with("AWS::")) {
                out.push_str(&self.attribute(resource, attribute)?);
            } else {
                out.push_str(&json_scalar(&self.reference(name)?));
            }
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEMPLATE: &str = r#"
Parameters:
  Level: { Type: String, Default: INFO }
Globals:
  Function:
    Timeout: 7
    Environment: { Variables: { SHARED: yes } }
Resources:
  Pool: { Type: AWS::Cognito::UserPool }
  Client: { Type: AWS::Cognito::UserPoolClient }
  Table:
    Type: AWS::DynamoDB::Table
    Properties:
      KeySchema: [{ AttributeName: pk, KeyType: HASH }]
  Api:
    Type: AWS::Serverless::HttpApi
    Properties:
      Auth:
        DefaultAuthorizer: Jwt
        Authorizers:
          Jwt:
            JwtConfiguration:
              issuer: !Sub https://cognito-idp.${AWS::Region}.amazonaws.com/${Pool}
              audience: [!Ref Client]
  Fn:
    Type: AWS::Serverless::Function
    Metadata: { BuildProperties: { Binary: thing } }
    Properties:
      Environment:
        Variables:
          TABLE: !Ref Table
          ARN: { "Fn::GetAtt": [Table, Arn] }
          JOINED: !Join ["-", [!Ref Level, !Sub "${Table.Arn}/index"]]
      Events:
        Open: { Type: HttpApi, Properties: { ApiId: !Ref Api, Path: "/things/{id}", Method: get, Auth: { Authorizer: NONE } } }
        Closed: { Type: HttpApi, Properties: { ApiId: !Ref Api, Path: /things, Method: POST } }
"#;

    fn stack() -> Stack {
        Stack { name: "shop".to_owned(), region: "eu-west-1".to_owned(), endpoint: "http://127.0.0.1:5000".to_owned() }
    }

    #[test]
    fn function_environments_resolve_refs_getatts_subs_and_joins() {
        let template = Template::parse(TEMPLATE).unwrap();
        let physical = template.physical_names(&stack());
        let functions = template.functions(&stack(), &physical).unwrap();
        let env = &functions[0].environment;
        assert_eq!(env["TABLE"], "shop-Table");
        assert_eq!(env["ARN"], "arn:aws:dynamodb:eu-west-1:123456789012:table/shop-Table");
        assert_eq!(env["JOINED"], "INFO-arn:aws:dynamodb:eu-west-1:123456789012:table/shop-Table/index");
        assert_eq!(env["SHARED"], "yes");
        assert_eq!(functions[0].timeout_secs, 7);
        assert_eq!(functions[0].binary, "thing");
    }

    #[test]
    fn routes_keep_their_authorizer_choice() {
        let template = Template::parse(TEMPLATE).unwrap();
        let physical = template.physical_names(&stack());
        let routes = &template.functions(&stack(), &physical).unwrap()[0].routes;
        assert!(routes.contains(&RouteSpec { method: "GET".into(), path: "/things/{id}".into(), authorizer: None }));
        assert!(routes.contains(&RouteSpec {
            method: "POST".into(),
            path: "/things".into(),
            authorizer: Some(String::new())
        }));
    }

    #[test]
    fn the_jwt_authorizer_resolves_to_the_local_pool_and_client() {
        let template = Template::parse(TEMPLATE).unwrap();
        let physical = template.physical_names(&stack());
        let api = template.http_api(&stack(), &physical).unwrap().unwrap();
        assert_eq!(api.default_authorizer.as_deref(), Some("Jwt"));
        assert_eq!(api.authorizers[0].issuer, "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_shoplocal");
        assert_eq!(api.authorizers[0].audience, vec!["shop-Client".to_owned()]);
        assert_eq!(api.cors, None, "no CorsConfiguration");
    }

    #[test]
    fn the_cors_configuration_resolves_a_comma_delimited_list_parameter() {
        let text = TEMPLATE.replace(
            "      Auth:\n        DefaultAuthorizer: Jwt",
            "      CorsConfiguration:\n        AllowOrigins: !Ref Origins\n        AllowMethods: [get, post]\n        \
             ExposeHeaders: [ETag]\n        MaxAge: 600\n      Auth:\n        DefaultAuthorizer: Jwt",
        );
        let text = text.replace(
            "Parameters:\n",
            "Parameters:\n  Origins: { Type: CommaDelimitedList, Default: \"https://a.example,https://b.example\" }\n",
        );
        let template = Template::parse(&text).unwrap();
        let physical = template.physical_names(&stack());
        let cors = template.http_api(&stack(), &physical).unwrap().unwrap().cors.unwrap();
        assert_eq!(cors.allow_origins, vec!["https://a.example", "https://b.example"]);
        assert_eq!(cors.allow_methods, vec!["GET", "POST"]);
        assert_eq!(cors.expose_headers, vec!["etag"]);
        assert_eq!(cors.max_age, Some(600));
    }

    #[test]
    fn credentials_with_any_origin_are_refused_as_sam_refuses_them() {
        let text = TEMPLATE.replace(
            "      Auth:\n        DefaultAuthorizer: Jwt",
            "      CorsConfiguration:\n        AllowOrigins: ['*']\n        AllowCredentials: true\n      \
             Auth:\n        DefaultAuthorizer: Jwt",
        );
        let template = Template::parse(&text).unwrap();
        let physical = template.physical_names(&stack());
        let error = template.http_api(&stack(), &physical).unwrap_err().to_string();
        assert!(error.contains("Api.CorsConfiguration") && error.contains("AllowCredentials"), "{error}");
    }

    #[test]
    fn an_unsupported_intrinsic_names_the_resource() {
        let text = TEMPLATE.replace("TABLE: !Ref Table", "TABLE: !If [IsProd, a, b]");
        let template = Template::parse(&text).unwrap();
        let physical = template.physical_names(&stack());
        let error = format!("{:#}", template.functions(&stack(), &physical).unwrap_err());
        assert!(error.contains("Fn.Properties"), "{error}");
        assert!(error.contains("Fn::If"), "{error}");
    }

    /// IAM is not enforced locally, so a missing permission would first fail in AWS. The consumer
    /// inbox (`adapters::inbox`) claims with PutItem (reading the claim with GetItem when a failed
    /// condition returns no item), marks handled with UpdateItem and releases with DeleteItem on
    /// the consumer's own table.
    #[test]
    fn every_queue_consumer_may_write_its_inbox_on_its_own_table() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../template.yaml");
        let template = Template::load(&path).unwrap();
        let mut physical = template.physical_names(&stack());
        for (table, _) in template.of_type("AWS::DynamoDB::Table") {
            // Known once the table exists; any value does here.
            physical.attributes.insert((table.clone(), "StreamArn".to_owned()), format!("{table}/stream"));
        }
        let functions = template.functions(&stack(), &physical).unwrap();
        let consumers: Vec<_> =
            functions.iter().filter(|f| f.triggers.iter().any(|t| matches!(t, TriggerSpec::Sqs { .. }))).collect();
        assert!(consumers.len() >= 4, "cart, checkout, payment and inventory consume queues");
        for function in consumers {
            let table = function
                .environment
                .iter()
                .find(|(name, _)| name.ends_with("_TABLE"))
                .map(|(_, table)| format!("arn:aws:dynamodb:eu-west-1:123456789012:table/{table}"))
                .unwrap_or_else(|| panic!("{} names no table", function.logical_id));
            let mut granted = Vec::new();
            for statement in function.policies.as_array().into_iter().flatten().filter_map(|p| p.get("Statement")) {
                for statement in statement.as_array().into_iter().flatten() {
                    let resources = match &statement["Resource"] {
                        Json::Array(list) => list.clone(),
                        one => vec![one.clone()],
                    };
                    if statement["Effect"] == "Allow" && resources.iter().any(|r| r == &Json::String(table.clone())) {
                        let actions = match &statement["Action"] {
                            Json::Array(list) => list.clone(),
                            one => vec![one.clone()],
                        };
                        granted.extend(actions.iter().filter_map(Json::as_str).map(str::to_owned));
                    }
                }
            }
            for needed in ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem"] {
                assert!(granted.iter().any(|a| a == needed), "{} lacks {needed} on {table}", function.logical_id);
            }
        }
    }

    /// What an operator needs of every function in AWS, which the local cloud cannot show: logs
    /// that expire, and alarms that tell someone.
    #[test]
    fn every_function_has_a_log_group_with_retention_and_every_alarm_tells_the_alarm_topic() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../template.yaml");
        let template = Template::load(&path).unwrap();
        let log_groups: Vec<String> = template
            .of_type("AWS::Logs::LogGroup")
            .filter(|(_, group)| group.get("Properties").and_then(|p| p.get("RetentionInDays")).is_some())
            .filter_map(|(_, group)| {
                let name = group.get("Properties")?.get("LogGroupName")?;
                let Yaml::Tagged(tagged) = name else { return None };
                Some(tagged.value.as_str()?.to_owned())
            })
            .collect();
        for (function, _) in template.of_type("AWS::Serverless::Function") {
            let wanted = format!("/aws/lambda/${{{function}}}");
            assert!(log_groups.contains(&wanted), "{function} has no log group with a retention");
        }
        let mut alarms = 0;
        for (alarm, resource) in template.of_type("AWS::CloudWatch::Alarm") {
            alarms += 1;
            let actions = resource.get("Properties").and_then(|p| p.get("AlarmActions"));
            let tells_topic = matches!(actions, Some(Yaml::Sequence(list)) if list.iter().any(|action| {
                matches!(action, Yaml::Tagged(tagged) if tagged.tag == "Ref" && tagged.value.as_str() == Some("AlarmTopic"))
            }));
            assert!(tells_topic, "{alarm} notifies no one");
        }
        assert!(alarms >= 20, "only {alarms} alarms");
    }

    /// An operator sees every function and queue on the dashboard and hears of each through an
    /// alarm: a function's errors (its own alarm) and throttles (a grouped one), a queue's dead
    /// letters (its DLQ's alarm, which names the DLQ) and its lag (on the dashboard).
    #[test]
    fn every_function_and_queue_is_on_the_dashboard_and_in_an_alarm() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../template.yaml");
        let template = Template::load(&path).unwrap();
        let text = |yaml: &Yaml| serde_norway::to_string(yaml).unwrap_or_default();
        let dashboards: Vec<String> = template.of_type("AWS::CloudWatch::Dashboard").map(|(_, d)| text(d)).collect();
        assert_eq!(dashboards.len(), 1, "one dashboard");
        let alarms: Vec<(String, String)> =
            template.of_type("AWS::CloudWatch::Alarm").map(|(id, alarm)| (id.clone(), text(alarm))).collect();
        // In the serialized YAML a reference is `!Ref X` or `!GetAtt X.QueueName`, and inside a
        // `!Sub` text `${X}` or `${X.QueueName}`.
        let names = |body: &str, id: &str| {
            let word = |at: usize| body[at..].chars().next().is_none_or(|c| !c.is_ascii_alphanumeric());
            [format!("${{{id}}}"), format!("${{{id}.QueueName}}"), format!("!GetAtt {id}.QueueName")]
                .iter()
                .any(|pattern| body.contains(pattern.as_str()))
                || body.match_indices(&format!("!Ref {id}")).any(|(at, found)| word(at + found.len()))
        };
        for (function, _) in template.of_type("AWS::Serverless::Function") {
            assert!(names(&dashboards[0], function), "{function} is not on the dashboard");
            for metric in ["Errors", "Throttles"] {
                let covered = alarms.iter().any(|(_, alarm)| alarm.contains(metric) && names(alarm, function));
                assert!(covered, "no {metric} alarm names {function}");
            }
        }
        for (queue, _) in template.of_type("AWS::SQS::Queue") {
            assert!(names(&dashboards[0], queue), "{queue} is not on the dashboard");
            let dead_letters = if queue.ends_with("DeadLetterQueue") {
                queue.clone()
            } else {
                queue.replace("Queue", "DeadLetterQueue")
            };
            let covered = alarms.iter().any(|(_, alarm)| names(alarm, &dead_letters));
            assert!(covered, "no alarm watches {queue}'s dead letters ({dead_letters})");
        }
    }

    /// A default everyone can read would let anyone sign Stripe webhooks: a deploy must name the
    /// real secret, and the local cloud sets its own.
    #[test]
    fn the_webhook_signing_secret_has_no_default() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../template.yaml");
        let template = Template::load(&path).unwrap();
        assert!(!template.parameters.contains_key("StripeWebhookSigningSecret"), "it has a default");
    }

    #[test]
    fn an_unknown_resource_type_is_refused_by_name() {
        let text = TEMPLATE.replace("Type: AWS::Cognito::UserPoolClient", "Type: AWS::Kinesis::Stream");
        let error = Template::parse(&text).unwrap_err().to_string();
        assert!(error.contains("Client") && error.contains("AWS::Kinesis::Stream"), "{error}");
    }
}
