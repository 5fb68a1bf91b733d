//! A deployed stack's operations (feature `aws`): its accounts table (`accounts list|add|disable|
//! enable`) and a resync of one of its accounts in its state table. The tables are named by the stack's
//! outputs `AccountsTableName` and `StateTableName`; AWS credentials and region come the SDK's usual
//! way (`AWS_PROFILE`, `AWS_REGION`, …).

use aws_config::{BehaviorVersion, SdkConfig};
use std::process::ExitCode;
use stripe_pipeline::config::{Account, Config};
use stripe_pipeline::state::{DynamoState, StateStore};
use stripe_pipeline_functions::accounts::{AccountRecord, Accounts};
use stripe_pipeline_functions::secrets::Secrets;

#[derive(Debug, clap::Subcommand)]
pub enum AccountsAction {
    /// Every account of the table: name, enabled, datasets, secret.
    List,
    /// Add an account whose key is stored in Secrets Manager (under a name starting with stripe-pipeline/).
    Add {
        name: String,
        /// The ARN of the secret that holds the account's restricted or secret key.
        #[arg(long)]
        secret_arn: String,
        /// Only these datasets (repeatable); default: all.
        #[arg(long = "dataset")]
        datasets: Vec<String>,
        /// A Connect platform: sync its connected accounts too (connected_accounts and the
        /// connected_account_* tables).
        #[arg(long)]
        connect: bool,
        /// The partner event source of the account's Stripe event destination of type Amazon
        /// EventBridge (aws.partner/stripe.com/ed_…): the workers apply the events that arrive from it.
        #[arg(long)]
        event_source: Option<String>,
    },
    /// Stop syncing an account: it is not planned any more and its queued slices are skipped; its data and cursors stay.
    Disable { name: String },
    /// Sync a disabled account again, from where its cursors are.
    Enable { name: String },
}

async fn sdk() -> SdkConfig {
    aws_config::load_defaults(BehaviorVersion::latest()).await
}

fn accounts_of(sdk: &SdkConfig, table: &str) -> Accounts {
    Accounts::new(aws_sdk_dynamodb::Client::new(sdk), table)
}

/// `stripe-pipeline accounts …` on the table `table`.
pub async fn accounts(table: &str, action: AccountsAction) -> ExitCode {
    let accounts = accounts_of(&sdk().await, table);
    let result = match action {
        AccountsAction::List => list(&accounts).await,
        AccountsAction::Add {
            name,
            secret_arn,
            datasets,
            connect,
            event_source,
        } => {
            if let Some(bad) = event_source
                .as_deref()
                .filter(|s| !s.starts_with("aws.partner/stripe.com/"))
            {
                return crate::fail(2, &format!("--event-source '{bad}' is not a Stripe partner event source: it starts with aws.partner/stripe.com/ (EventBridge lists it under Partner event sources)"));
            }
            let record = AccountRecord {
                name: name.clone(),
                secret_arn,
                enabled: true,
                datasets,
                connect,
                event_source,
            };
            if let Err(e) = record.datasets() {
                return crate::fail(2, &e.to_string());
            }
            match accounts.add_if_missing(&record).await {
                Ok(true) => Ok(format!("account '{name}' added to {table}; the next tick plans its backfill")),
                Ok(false) => Err((2, format!("an account named '{name}' is already in {table}; disable it, or edit its item"))),
                Err(e) => Err((3, e.to_string())),
            }
        }
        AccountsAction::Disable { name } => switch(&accounts, table, &name, false).await,
        AccountsAction::Enable { name } => switch(&accounts, table, &name, true).await,
    };
    match result {
        Ok(text) => {
            println!("{text}");
            ExitCode::SUCCESS
        }
        Err((code, message)) => crate::fail(code, &message),
    }
}

async fn list(accounts: &Accounts) -> Result<String, (u8, String)> {
    let all = accounts.all().await.map_err(|e| (3, e.to_string()))?;
    let mut lines = vec![format!(
        "{:<24} {:<8} {:<8} {:<28} secret",
        "name", "enabled", "connect", "datasets"
    )];
    for record in all {
        match record {
            Ok(r) => {
                let datasets = if r.datasets.is_empty() {
                    "all".to_string()
                } else {
                    r.datasets.join(",")
                };
                lines.push(format!(
                    "{:<24} {:<8} {:<8} {:<28} {}",
                    r.name,
                    if r.enabled { "yes" } else { "no" },
                    if r.connect { "yes" } else { "no" },
                    datasets,
                    r.secret_arn
                ));
            }
            Err(e) => lines.push(format!("(unreadable item: {e})")),
        }
    }
    Ok(lines.join("\n"))
}

async fn switch(
    accounts: &Accounts,
    table: &str,
    name: &str,
    enabled: bool,
) -> Result<String, (u8, String)> {
    match accounts.set_enabled(name, enabled).await {
        Ok(true) if enabled => Ok(format!("account '{name}' enabled; the next tick plans it")),
        Ok(true) => Ok(format!(
            "account '{name}' disabled; its data and cursors stay, `accounts enable {name}` resumes it"
        )),
        Ok(false) => Err((2, format!("no account named '{name}' in {table}; `accounts list` shows them"))),
        Err(e) => Err((3, e.to_string())),
    }
}

/// `stripe-pipeline resync --accounts-table T --state-table S`: the stack's version of
/// [`stripe_pipeline::local::resync`]. The key comes from the account's secret; Stripe's API base
/// from the configuration (`STRIPE_PIPELINE_API_BASE`).
pub async fn resync(
    cfg: &Config,
    accounts_table: &str,
    state_table: &str,
    name: &str,
    datasets: &[String],
) -> ExitCode {
    let sdk = sdk().await;
    let record = match accounts_of(&sdk, accounts_table).get(name).await {
        Ok(Some(r)) => r,
        Ok(None) => {
            return crate::fail(
                2,
                &format!(
                    "no account named '{name}' in {accounts_table}; `accounts list` shows them"
                ),
            )
        }
        Err(e) => return crate::fail(3, &e.to_string()),
    };
    let syncs = match record.datasets() {
        Ok(d) => d,
        Err(e) => return crate::fail(2, &e.to_string()),
    };
    let mut marked = Vec::new();
    for d in datasets {
        match syncs.iter().find(|s| s.name == *d) {
            Some(s) => marked.push(*s),
            None => {
                return crate::fail(
                    2,
                    &format!(
                        "account '{name}' does not sync a dataset '{d}'; it syncs: {}",
                        syncs
                            .iter()
                            .map(|s| s.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                )
            }
        }
    }
    if marked.is_empty() {
        marked = syncs;
    }
    let secrets = Secrets::new(aws_sdk_secretsmanager::Client::new(&sdk));
    let key = match secrets.stripe_key(name, &record.secret_arn).await {
        Ok(k) => k,
        Err(e) => return crate::fail(2, &e.to_string()),
    };
    let account = Account {
        name: name.to_string(),
        livemode: key.livemode().unwrap_or(false),
        key,
        connect: false,
    };
    let client = stripe_pipeline::local::client(cfg);
    let r = match stripe_pipeline::engine::resolve(&client, &[account]).await {
        Ok(mut r) if !r.is_empty() => r.remove(0),
        Ok(_) => {
            return crate::fail(
                2,
                &format!("account '{name}': the key check returned nothing"),
            )
        }
        Err(e) => return crate::fail(2, &e.to_string()),
    };
    let state: StateStore = DynamoState::new(&sdk, state_table).into();
    for d in &marked {
        if let Err(e) = stripe_pipeline::engine::plan::relist(&state, &r, d).await {
            return crate::fail(3, &e.to_string());
        }
    }
    println!(
        "account '{name}' ({}, {}): {} marked for a full list; the next tick lists them again and marks objects gone from Stripe deleted",
        r.merchant_id,
        r.mode(),
        marked.iter().map(|d| d.name.as_str()).collect::<Vec<_>>().join(", ")
    );
    ExitCode::SUCCESS
}
