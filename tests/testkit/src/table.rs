//! A table of one domain for a store test: a moto of the test binary's own (started once), and
//! a fresh table per test, created exactly as template.yaml declares it (keys, indexes, stream,
//! TTL), so a store test checks its conditions and queries against the real table layout.

use std::path::PathBuf;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_dynamodb::types::AttributeValue;

/// moto, started once for the binary; it exits when this process does (its stdin closes).
async fn moto() -> &'static str {
    static MOTO: tokio::sync::OnceCell<localcloud::emulator::Emulator> = tokio::sync::OnceCell::const_new();
    let moto = MOTO
        .get_or_init(|| async {
            let root = crate::root();
            let python = std::env::var_os("FERROCART_PYTHON")
                .map(PathBuf::from)
                .unwrap_or_else(|| root.join(".venv/emulators/bin/python"));
            let script = root.join("infra/emulators/moto_server.py");
            match localcloud::emulator::Emulator::start("moto", &python, &script).await {
                Ok(moto) => moto,
                Err(error) => panic!("could not start moto with {}: {error:#}", python.display()),
            }
        })
        .await;
    &moto.url
}

/// A fresh table created as template.yaml declares `logical_id` (`"InventoryTable"`).
#[derive(Debug, Clone)]
pub struct Table {
    pub client: Client,
    pub name: String,
}

impl Table {
    pub async fn new(logical_id: &str) -> Self {
        let endpoint = moto().await;
        let config = aws_sdk_dynamodb::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .endpoint_url(endpoint)
            .credentials_provider(Credentials::new("test", "test", None, None, "test"))
            .build();
        let client = Client::from_conf(config);
        let template = localcloud::template::Template::load(&crate::root().join("template.yaml"))
            .unwrap_or_else(|error| panic!("template.yaml: {error:#}"));
        let stack = localcloud::template::Stack {
            name: crate::unique("store"),
            region: "us-east-1".into(),
            endpoint: endpoint.to_owned(),
        };
        let physical = template.physical_names(&stack);
        let specs: Vec<_> = template
            .tables(&stack, &physical)
            .unwrap_or_else(|error| panic!("template.yaml tables: {error:#}"))
            .into_iter()
            .filter(|spec| spec.logical_id == logical_id)
            .collect();
        let Some(spec) = specs.first() else { panic!("template.yaml declares no table {logical_id}") };
        let name = spec.name.clone();
        if let Err(error) = localcloud::provision::tables(&client, &specs).await {
            panic!("creating {logical_id}: {error:#}");
        }
        Self { client, name }
    }

    /// `(detail_type, data)` of every event in the table's outbox, in no particular order.
    pub async fn outbox(&self) -> Vec<(String, serde_json::Value)> {
        let scanned = self
            .client
            .scan()
            .table_name(&self.name)
            .filter_expression("begins_with(pk, :outbox)")
            .expression_attribute_values(":outbox", AttributeValue::S("OUTBOX#".into()))
            .send()
            .await;
        let items = match scanned {
            Ok(output) => output.items.unwrap_or_default(),
            Err(error) => panic!("scanning {}: {}", self.name, aws_sdk_dynamodb::error::DisplayErrorContext(error)),
        };
        items
            .iter()
            .map(|item| {
                let text = |name: &str| item.get(name).and_then(|v| v.as_s().ok()).cloned().unwrap_or_default();
                let detail: serde_json::Value = serde_json::from_str(&text("detail")).unwrap_or_default();
                (text("detail_type"), detail["data"].clone())
            })
            .collect()
    }
}
