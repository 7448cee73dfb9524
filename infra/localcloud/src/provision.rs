//! Creates what the template declares in the emulator: DynamoDB tables exactly as declared (keys,
//! attribute types, GSIs with their projections, streams, TTL), SQS queues with their redrive
//! policies, EventBridge buses, rules with their targets, and Secrets Manager secrets.

use anyhow::{Context as _, anyhow};
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection, ProjectionType,
    ScalarAttributeType, StreamSpecification, StreamViewType, TimeToLiveSpecification,
};
use serde_json::Value as Json;

use crate::template::{BusSpec, QueueSpec, RuleSpec, SecretSpec, TableSpec};

/// What provisioning learned that the template could not say: the stream ARN of each table.
#[derive(Debug, Clone)]
pub struct ProvisionedTable {
    pub logical_id: String,
    pub name: String,
    pub stream_arn: Option<String>,
}

/// Creates every table that does not exist yet; an existing table (a re-run against a
/// long-lived LocalStack) is kept with its data.
pub async fn tables(client: &Client, specs: &[TableSpec]) -> anyhow::Result<Vec<ProvisionedTable>> {
    let mut provisioned = Vec::with_capacity(specs.len());
    for spec in specs {
        create_table(client, spec)
            .await
            .with_context(|| format!("creating table {} ({})", spec.logical_id, spec.name))?;
        let described = client.describe_table().table_name(&spec.name).send().await?;
        provisioned.push(ProvisionedTable {
            logical_id: spec.logical_id.clone(),
            name: spec.name.clone(),
            stream_arn: described.table.and_then(|t| t.latest_stream_arn),
        });
    }
    Ok(provisioned)
}

fn text<'a>(value: &'a Json, key: &str) -> anyhow::Result<&'a str> {
    value.get(key).and_then(Json::as_str).ok_or_else(|| anyhow!("missing {key}"))
}

fn key_schema(list: Option<&Json>) -> anyhow::Result<Vec<KeySchemaElement>> {
    list.and_then(Json::as_array)
        .ok_or_else(|| anyhow!("missing KeySchema"))?
        .iter()
        .map(|element| {
            Ok(KeySchemaElement::builder()
                .attribute_name(text(element, "AttributeName")?)
                .key_type(KeyType::from(text(element, "KeyType")?))
                .build()?)
        })
        .collect()
}

async fn create_table(client: &Client, spec: &TableSpec) -> anyhow::Result<()> {
    let properties = &spec.properties;
    let definitions = properties
        .get("AttributeDefinitions")
        .and_then(Json::as_array)
        .ok_or_else(|| anyhow!("missing AttributeDefinitions"))?
        .iter()
        .map(|definition| {
            Ok(AttributeDefinition::builder()
                .attribute_name(text(definition, "AttributeName")?)
                .attribute_type(ScalarAttributeType::from(text(definition, "AttributeType")?))
                .build()?)
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut request = client
        .create_table()
        .table_name(&spec.name)
        .set_attribute_definitions(Some(definitions))
        .set_key_schema(Some(key_schema(properties.get("KeySchema"))?))
        .billing_mode(BillingMode::PayPerRequest);
    for index in properties.get("GlobalSecondaryIndexes").and_then(Json::as_array).into_iter().flatten() {
        let projection = index.get("Projection");
        let projection = Projection::builder()
            .projection_type(ProjectionType::from(
                projection.and_then(|p| p.get("ProjectionType")).and_then(Json::as_str).unwrap_or("ALL"),
            ))
            .set_non_key_attributes(
                projection
                    .and_then(|p| p.get("NonKeyAttributes"))
                    .and_then(Json::as_array)
                    .map(|names| names.iter().filter_map(Json::as_str).map(str::to_owned).collect()),
            )
            .build();
        request = request.global_secondary_indexes(
            GlobalSecondaryIndex::builder()
                .index_name(text(index, "IndexName")?)
                .set_key_schema(Some(key_schema(index.get("KeySchema"))?))
                .projection(projection)
                .build()?,
        );
    }
    if let Some(view) = properties.pointer("/StreamSpecification/StreamViewType").and_then(Json::as_str) {
        request = request.stream_specification(
            StreamSpecification::builder().stream_enabled(true).stream_view_type(StreamViewType::from(view)).build()?,
        );
    }
    match request.send().await {
        Ok(_) => {}
        Err(error) if error.as_service_error().is_some_and(|e| e.is_resource_in_use_exception()) => {
            return Ok(());
        }
        Err(error) => return Err(aws_sdk_dynamodb::Error::from(error).into()),
    }
    if let Some(ttl) = properties.get("TimeToLiveSpecification") {
        let enabled = ttl.get("Enabled").and_then(Json::as_bool).unwrap_or(false);
        if enabled {
            client
                .update_time_to_live()
                .table_name(&spec.name)
                .time_to_live_specification(
                    TimeToLiveSpecification::builder()
                        .enabled(true)
                        .attribute_name(text(ttl, "AttributeName")?)
                        .build()?,
                )
                .send()
                .await?;
        }
    }
    Ok(())
}

/// Creates the template's queues, then points each at its dead-letter queue (so a queue and its
/// DLQ can be declared in any order).
pub async fn queues(client: &aws_sdk_sqs::Client, specs: &[QueueSpec]) -> anyhow::Result<()> {
    use aws_sdk_sqs::types::QueueAttributeName;
    // CloudFormation property → SQS attribute, for the attributes that change behaviour locally.
    const ATTRIBUTES: &[(&str, &str)] = &[
        ("VisibilityTimeout", "VisibilityTimeout"),
        ("MessageRetentionPeriod", "MessageRetentionPeriod"),
        ("DelaySeconds", "DelaySeconds"),
        ("ReceiveMessageWaitTimeSeconds", "ReceiveMessageWaitTimeSeconds"),
        ("FifoQueue", "FifoQueue"),
        ("ContentBasedDeduplication", "ContentBasedDeduplication"),
    ];
    let mut urls = Vec::with_capacity(specs.len());
    for spec in specs {
        let mut request = client.create_queue().queue_name(&spec.name);
        for (property, attribute) in ATTRIBUTES {
            if let Some(value) = spec.properties.get(*property) {
                let value = match value {
                    Json::String(s) => s.clone(),
                    other => other.to_string(),
                };
                request = request.attributes(QueueAttributeName::from(*attribute), value);
            }
        }
        let created = request.send().await.with_context(|| format!("creating queue {}", spec.logical_id))?;
        urls.push(created.queue_url.unwrap_or_default());
    }
    for (spec, url) in specs.iter().zip(&urls) {
        if let Some(policy) = spec.properties.get("RedrivePolicy") {
            client
                .set_queue_attributes()
                .queue_url(url)
                .attributes(QueueAttributeName::RedrivePolicy, policy.to_string())
                .send()
                .await
                .with_context(|| format!("setting the redrive policy of {}", spec.logical_id))?;
        }
    }
    Ok(())
}

/// Creates the buses, then the rules on them with their targets.
pub async fn eventbridge(
    client: &aws_sdk_eventbridge::Client,
    buses: &[BusSpec],
    rules: &[RuleSpec],
) -> anyhow::Result<()> {
    use aws_sdk_eventbridge::types::{InputTransformer, RuleState, Target};
    for bus in buses {
        match client.create_event_bus().name(&bus.name).send().await {
            Ok(_) => {}
            Err(error) if error.as_service_error().is_some_and(|e| e.is_resource_already_exists_exception()) => {}
            Err(error) => {
                return Err(aws_sdk_eventbridge::Error::from(error))
                    .with_context(|| format!("creating bus {}", bus.logical_id));
            }
        }
    }
    for rule in rules {
        let properties = &rule.properties;
        let mut request = client.put_rule().name(&rule.name).event_bus_name(&rule.bus);
        if let Some(pattern) = properties.get("EventPattern") {
            request = request.event_pattern(pattern.to_string());
        }
        if let Some(schedule) = properties.get("ScheduleExpression").and_then(Json::as_str) {
            request = request.schedule_expression(schedule);
        }
        let disabled = properties.get("State").and_then(Json::as_str) == Some("DISABLED");
        request = request.state(if disabled { RuleState::Disabled } else { RuleState::Enabled });
        request.send().await.with_context(|| format!("creating rule {}", rule.logical_id))?;
        let mut targets = Vec::new();
        for target in properties.get("Targets").and_then(Json::as_array).into_iter().flatten() {
            let mut builder = Target::builder().id(text(target, "Id")?).arn(text(target, "Arn")?);
            if let Some(input) = target.get("Input").and_then(Json::as_str) {
                builder = builder.input(input);
            }
            if let Some(transformer) = target.get("InputTransformer") {
                let paths = transformer.get("InputPathsMap").and_then(Json::as_object).map(|map| {
                    map.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned())).collect()
                });
                builder = builder.input_transformer(
                    InputTransformer::builder()
                        .set_input_paths_map(paths)
                        .input_template(text(transformer, "InputTemplate")?)
                        .build()?,
                );
            }
            targets.push(builder.build()?);
        }
        if !targets.is_empty() {
            client
                .put_targets()
                .rule(&rule.name)
                .event_bus_name(&rule.bus)
                .set_targets(Some(targets))
                .send()
                .await
                .with_context(|| format!("adding the targets of rule {}", rule.logical_id))?;
        }
    }
    Ok(())
}

/// Creates the template's secrets with their `SecretString`, or with a value generated from
/// `GenerateSecretString` as CloudFormation does, returning each one's ARN (a secret's `Ref`), so
/// functions read them through Secrets Manager as they do in AWS. A secret that already exists
/// (a re-run against a long-lived LocalStack) keeps its value.
pub async fn secrets(
    client: &aws_sdk_secretsmanager::Client,
    specs: &[SecretSpec],
) -> anyhow::Result<Vec<(String, String)>> {
    let mut arns = Vec::with_capacity(specs.len());
    for spec in specs {
        let value = secret_value(client, spec).await.with_context(|| format!("secret {}", spec.logical_id))?;
        let created = client.create_secret().name(&spec.name).secret_string(value).send().await;
        let arn = match created {
            Ok(output) => output.arn,
            Err(error) if error.as_service_error().is_some_and(|e| e.is_resource_exists_exception()) => {
                client.describe_secret().secret_id(&spec.name).send().await?.arn
            }
            Err(error) => {
                return Err(aws_sdk_secretsmanager::Error::from(error))
                    .with_context(|| format!("creating secret {}", spec.logical_id));
            }
        };
        arns.push((spec.logical_id.clone(), arn.unwrap_or_default()));
    }
    Ok(arns)
}

/// The options of `GenerateSecretString` that are `GetRandomPassword`'s parameters.
const PASSWORD_OPTIONS: [&str; 8] = [
    "PasswordLength",
    "ExcludeCharacters",
    "ExcludeLowercase",
    "ExcludeNumbers",
    "ExcludePunctuation",
    "ExcludeUppercase",
    "IncludeSpace",
    "RequireEachIncludedType",
];

/// A secret's value: its `SecretString`; or, with `GenerateSecretString`, a random password
/// from the emulator's `GetRandomPassword`, which takes the same options CloudFormation passes
/// it, placed under `GenerateStringKey` in the `SecretStringTemplate` JSON when those are given;
/// or empty with neither, as CloudFormation creates it.
async fn secret_value(client: &aws_sdk_secretsmanager::Client, spec: &SecretSpec) -> anyhow::Result<String> {
    let properties = &spec.properties;
    let options = match (properties.get("SecretString"), properties.get("GenerateSecretString")) {
        (Some(_), Some(_)) => anyhow::bail!("SecretString and GenerateSecretString are exclusive"),
        (Some(value), None) => {
            return value.as_str().map(str::to_owned).ok_or_else(|| anyhow!("SecretString is not a string"));
        }
        (None, None) => return Ok(String::new()),
        (None, Some(options)) => options.as_object().ok_or_else(|| anyhow!("GenerateSecretString is not a map"))?,
    };
    let known =
        |name: &str| PASSWORD_OPTIONS.contains(&name) || name == "SecretStringTemplate" || name == "GenerateStringKey";
    if let Some(unknown) = options.keys().find(|name| !known(name)) {
        anyhow::bail!("GenerateSecretString.{unknown} is not supported by the local cloud");
    }
    let flag = |name: &str| -> anyhow::Result<Option<bool>> {
        options
            .get(name)
            .map(|value| match value {
                Json::Bool(flag) => Ok(*flag),
                Json::String(text) if text == "true" || text == "false" => Ok(text == "true"),
                _ => Err(anyhow!("GenerateSecretString.{name} is not a boolean")),
            })
            .transpose()
    };
    let length = options
        .get("PasswordLength")
        .map(|value| {
            value
                .as_i64()
                .or_else(|| value.as_str().and_then(|text| text.parse().ok()))
                .ok_or_else(|| anyhow!("GenerateSecretString.PasswordLength is not a number"))
        })
        .transpose()?;
    let password = client
        .get_random_password()
        .set_password_length(length)
        .set_exclude_characters(options.get("ExcludeCharacters").and_then(Json::as_str).map(str::to_owned))
        .set_exclude_lowercase(flag("ExcludeLowercase")?)
        .set_exclude_numbers(flag("ExcludeNumbers")?)
        .set_exclude_punctuation(flag("ExcludePunctuation")?)
        .set_exclude_uppercase(flag("ExcludeUppercase")?)
        .set_include_space(flag("IncludeSpace")?)
        .set_require_each_included_type(flag("RequireEachIncludedType")?)
        .send()
        .await
        .map_err(aws_sdk_secretsmanager::Error::from)
        .context("generating its value with GetRandomPassword")?
        .random_password
        .ok_or_else(|| anyhow!("GetRandomPassword returned no password"))?;
    let template = options.get("SecretStringTemplate").and_then(Json::as_str);
    let key = options.get("GenerateStringKey").and_then(Json::as_str);
    match (template, key) {
        (None, None) => Ok(password),
        (Some(template), Some(key)) => {
            let mut object: serde_json::Map<String, Json> = serde_json::from_str(template)
                .context("GenerateSecretString.SecretStringTemplate is not a JSON object")?;
            object.insert(key.to_owned(), Json::String(password));
            Ok(Json::Object(object).to_string())
        }
        _ => anyhow::bail!("GenerateSecretString needs both SecretStringTemplate and GenerateStringKey, or neither"),
    }
}
