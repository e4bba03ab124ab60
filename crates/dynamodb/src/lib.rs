//! The DynamoDB adapter: the gateway's cloud store, in one table.
//!
//! It keeps the registry (event definitions, subscriptions, sources), the schema registry, the
//! delivery log and the idempotency keys. Every request path is a GetItem, a Query or a BatchGetItem on a key; there
//! is no Scan. The key schema, item shapes and which call serves which route are written down in
//! docs/DYNAMODB.md; [`create_table`] creates exactly that table (the SAM template mirrors it).
//!
//! Outcomes of the domain (a duplicate name, a stale version) come back as the core's errors;
//! every other DynamoDB failure is `Error::Unavailable`.

mod deliveries;
mod idempotency;
pub mod items;
mod redrive;
mod referrers;
mod registry;
mod schemas;
mod sources;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata};
use aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, KeysAndAttributes, Projection,
    ProjectionType, ScalarAttributeType, TableStatus, TimeToLiveSpecification, TransactWriteItem,
};
use aws_sdk_dynamodb::Client;
use gateway_core::page::{decode_cursor, encode_cursor};
use gateway_core::{DeliveryRetention, Error, PageRequest, SchemaName};

pub use aws_sdk_dynamodb::types::AttributeValue;
pub use redrive::{DynamoRedrive, RedriveQueue, SqsRedriveQueue};

use items::{GSI1, GSI1PK, GSI1SK, GSI2, GSI2PK, GSI2SK, PK, SK, TTL};

pub(crate) type Item = HashMap<String, AttributeValue>;
pub(crate) type Result<T, E = Error> = std::result::Result<T, E>;

/// The gateway's store on one DynamoDB table. Cheap to clone: clones share the client.
#[derive(Clone)]
pub struct DynamoStore {
    client: Client,
    table: Arc<str>,
    delivery_retention: DeliveryRetention,
    /// The `receivedAt` this process last wrote, per event (`touch_received_at`); shared by clones.
    received_written: Arc<std::sync::Mutex<HashMap<gateway_core::EventName, chrono::DateTime<chrono::Utc>>>>,
}

impl DynamoStore {
    /// A store on `table`, which must have the schema [`create_table`] creates, keeping delivery
    /// records for the default retention.
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: Arc::from(table.into()),
            delivery_retention: DeliveryRetention::default(),
            received_written: Default::default(),
        }
    }

    /// Delivery records written from now on expire (DynamoDB TTL) `retention` after their
    /// trigger was received.
    pub fn with_delivery_retention(mut self, retention: DeliveryRetention) -> Self {
        self.delivery_retention = retention;
        self
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    /// The items a query yields, following `LastEvaluatedKey` (each page is at most 1 MB)
    /// until `want` items are in hand or the query is exhausted.
    pub(crate) async fn query_items(
        &self,
        query: QueryFluentBuilder,
        mut start: Option<Item>,
        want: Option<usize>,
    ) -> Result<Vec<Item>> {
        let mut items = Vec::new();
        loop {
            let mut q = query.clone().set_exclusive_start_key(start.take());
            if let Some(want) = want {
                q = q.limit(i32::try_from(want - items.len()).unwrap_or(i32::MAX));
            }
            let out = q.send().await.map_err(|e| unavailable("Query", e))?;
            items.extend(out.items.unwrap_or_default());
            match out.last_evaluated_key {
                Some(key) if want.is_none_or(|w| items.len() < w) => start = Some(key),
                _ => return Ok(items),
            }
        }
    }

    /// One page of a query: `limit + 1` items are read so the cursor is only given when more
    /// follow. The cursor wraps the last item's key attributes `cursor_keys`; a cursor is only
    /// accepted back if it has exactly those and `cursor_ok` recognizes it as this query's.
    pub(crate) async fn query_page(
        &self,
        query: QueryFluentBuilder,
        page: &PageRequest,
        cursor_keys: &[&str],
        cursor_ok: impl Fn(&BTreeMap<String, String>) -> bool,
    ) -> Result<(Vec<Item>, Option<String>)> {
        let start = match &page.cursor {
            None => None,
            Some(cursor) => {
                let position: BTreeMap<String, String> = decode_cursor(cursor)?;
                let same_keys =
                    position.len() == cursor_keys.len() && cursor_keys.iter().all(|k| position.contains_key(*k));
                if !same_keys || !cursor_ok(&position) {
                    return Err(Error::InvalidCursor);
                }
                Some(position.into_iter().map(|(k, v)| (k, AttributeValue::S(v))).collect())
            }
        };
        let limit = page.limit as usize;
        let mut items = self.query_items(query, start, Some(limit + 1)).await?;
        if items.len() <= limit {
            return Ok((items, None));
        }
        items.truncate(limit);
        let last = items.last().expect("limit is at least 1");
        let position = cursor_keys
            .iter()
            .map(|k| Ok((k.to_string(), string_attr(last, k)?.to_owned())))
            .collect::<Result<BTreeMap<String, String>>>()?;
        Ok((items, Some(encode_cursor(&position))))
    }

    /// A consistent Query of partition `pk`'s items whose sort key begins with `prefix`.
    pub(crate) fn prefix_query(&self, pk: impl Into<String>, prefix: &str) -> QueryFluentBuilder {
        self.client
            .query()
            .table_name(self.table.as_ref())
            .consistent_read(true)
            .key_condition_expression("#pk = :pk AND begins_with(#sk, :prefix)")
            .expression_attribute_names("#pk", PK)
            .expression_attribute_names("#sk", SK)
            .expression_attribute_values(":pk", s(pk))
            .expression_attribute_values(":prefix", s(prefix))
    }

    /// One page of a listing through `gsi1`: the partition keys of the items `<prefix><gsi1sk>` /
    /// `sk` that the index partition `index` holds, in `gsi1sk` order. A cursor is only taken
    /// back if it names such an item of this index.
    pub(crate) async fn index_page(
        &self,
        index: &str,
        prefix: &str,
        sk: &str,
        page: &PageRequest,
    ) -> Result<(Vec<String>, Option<String>)> {
        let query = self
            .client
            .query()
            .table_name(self.table.as_ref())
            .index_name(GSI1)
            .key_condition_expression("#pk = :pk")
            .expression_attribute_names("#pk", GSI1PK)
            .expression_attribute_values(":pk", s(index));
        let (keys, next_cursor) = self
            .query_page(query, page, &[PK, SK, GSI1PK, GSI1SK], |c| {
                c[GSI1PK] == index && c[SK] == sk && c[PK] == format!("{prefix}{}", c[GSI1SK])
            })
            .await?;
        let pks = keys.iter().map(|k| string_attr(k, PK).map(str::to_owned)).collect::<Result<Vec<_>>>()?;
        Ok((pks, next_cursor))
    }

    /// The items `<pk>` / `sk` of a listed page, in one consistent read, in the page's order.
    /// The index is eventually consistent: an item deleted since it listed it is left out.
    pub(crate) async fn listed_items(&self, pks: Vec<String>, sk: &str) -> Result<Vec<Item>> {
        let mut found = self.batch_get(pks.iter().map(|pk| key(pk, sk)).collect()).await?;
        Ok(pks.into_iter().filter_map(|pk| found.remove(&(pk, sk.to_owned()))).collect())
    }

    /// Reads items by key, strongly consistent, 100 keys a call, retrying unprocessed keys.
    /// Returns them by `(pk, sk)`; keys with no item are absent.
    pub(crate) async fn batch_get(&self, keys: Vec<Item>) -> Result<HashMap<(String, String), Item>> {
        self.batch_get_only(keys, None).await
    }

    /// [`Self::batch_get`] reading only `attributes` of each item (`pk` and `sk` among them).
    pub(crate) async fn batch_get_only(
        &self,
        keys: Vec<Item>,
        attributes: Option<&[&str]>,
    ) -> Result<HashMap<(String, String), Item>> {
        // Placeholders for every name: several (`status`, `event`, `ttl`) are reserved words.
        let names: Option<HashMap<String, String>> =
            attributes.map(|a| a.iter().enumerate().map(|(i, name)| (format!("#a{i}"), (*name).to_owned())).collect());
        let projection = attributes.map(|a| (0..a.len()).map(|i| format!("#a{i}")).collect::<Vec<_>>().join(", "));
        let mut found = HashMap::with_capacity(keys.len());
        for chunk in keys.chunks(100) {
            let mut pending = chunk.to_vec();
            for round in 0u32.. {
                let request = KeysAndAttributes::builder()
                    .set_keys(Some(pending))
                    .consistent_read(true)
                    .set_projection_expression(projection.clone())
                    .set_expression_attribute_names(names.clone())
                    .build()
                    .map_err(Error::unavailable)?;
                let out = self
                    .client
                    .batch_get_item()
                    .request_items(self.table.as_ref(), request)
                    .send()
                    .await
                    .map_err(|e| unavailable("BatchGetItem", e))?;
                for item in out.responses.and_then(|mut r| r.remove(self.table.as_ref())).unwrap_or_default() {
                    let key = (string_attr(&item, PK)?.to_owned(), string_attr(&item, SK)?.to_owned());
                    found.insert(key, item);
                }
                pending = out
                    .unprocessed_keys
                    .and_then(|mut u| u.remove(self.table.as_ref()))
                    .map(|k| k.keys)
                    .unwrap_or_default();
                if pending.is_empty() {
                    break;
                }
                if round >= 8 {
                    return Err(Error::unavailable("DynamoDB left keys unprocessed after 8 retries"));
                }
                tokio::time::sleep(backoff(round)).await;
            }
        }
        Ok(found)
    }

    /// One item by key, strongly consistent.
    pub(crate) async fn get(&self, key: Item) -> Result<Option<Item>> {
        let out = self
            .client
            .get_item()
            .table_name(self.table.as_ref())
            .set_key(Some(key))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| unavailable("GetItem", e))?;
        Ok(out.item)
    }

    /// Writes `item` whole if `condition` holds on the stored one; `false` if it does not.
    pub(crate) async fn put_if(&self, item: Item, condition: &str, expr: &Expr) -> Result<bool> {
        let result = self
            .client
            .put_item()
            .table_name(self.table.as_ref())
            .set_item(Some(item))
            .condition_expression(condition)
            .set_expression_attribute_names(expr.names())
            .set_expression_attribute_values(expr.values())
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e) if condition_failed(&e) => Ok(false),
            Err(e) => Err(unavailable("PutItem", e)),
        }
    }

    /// Updates an item if `condition` holds; `false` if it does not.
    pub(crate) async fn update_if(&self, key: Item, update: String, condition: &str, expr: &Expr) -> Result<bool> {
        let result = self
            .client
            .update_item()
            .table_name(self.table.as_ref())
            .set_key(Some(key))
            .update_expression(update)
            .condition_expression(condition)
            .set_expression_attribute_names(expr.names())
            .set_expression_attribute_values(expr.values())
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e) if condition_failed(&e) => Ok(false),
            Err(e) => Err(unavailable("UpdateItem", e)),
        }
    }

    /// Runs a transaction whose actions are guarded: when DynamoDB cancels it, `Ok(Err(_))` says
    /// which guards' conditions failed.
    pub(crate) async fn transact_guarded(&self, tx: Tx) -> Result<Result<(), Cancelled>> {
        let Tx { actions, guards } = tx;
        Ok(self.transact(actions).await?.map_err(|reasons| {
            let failed = guards
                .into_iter()
                .zip(&reasons)
                .filter(|(_, reason)| *reason == "ConditionalCheckFailed")
                .map(|(guard, _)| guard)
                .collect();
            Cancelled { failed, reasons }
        }))
    }

    /// Runs a transaction. `Ok(Err(reasons))` when DynamoDB cancelled it: one reason code per
    /// item (`None`, `ConditionalCheckFailed`, ...). Conflicts with other transactions are
    /// retried a few times first.
    pub(crate) async fn transact(&self, items: Vec<TransactWriteItem>) -> Result<Result<(), Vec<String>>> {
        let mut round = 0;
        loop {
            let result = self.client.transact_write_items().set_transact_items(Some(items.clone())).send().await;
            let err = match result {
                Ok(_) => return Ok(Ok(())),
                Err(err) => err,
            };
            let reasons = match err.as_service_error() {
                Some(TransactWriteItemsError::TransactionCanceledException(cancel)) => cancel
                    .cancellation_reasons()
                    .iter()
                    .map(|r| r.code().unwrap_or("None").to_owned())
                    .collect::<Vec<_>>(),
                Some(e) if e.code() == Some("TransactionConflictException") => {
                    vec!["TransactionConflict".to_owned()]
                }
                _ => return Err(unavailable("TransactWriteItems", err)),
            };
            let conflict = reasons.iter().any(|r| r == "TransactionConflict");
            let other = reasons.iter().any(|r| r != "None" && r != "TransactionConflict");
            if conflict && !other && round < 4 {
                tokio::time::sleep(backoff(round)).await;
                round += 1;
                continue;
            }
            return Ok(Err(reasons));
        }
    }
}

/// What the condition of a transaction's action stands for, so that a cancellation can be told
/// in the domain's words.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Guard {
    /// No condition, or one that only fails if the table is not as the API writes it.
    Unguarded,
    /// The item the call is about: absent (a create) or at the version read (a change).
    Subject,
    /// The schema's deletion is not under way (no `#DELETING`).
    NotDeleting,
    /// The version's URI is free.
    Uri,
    /// This schema, referred to, exists.
    Referenced(SchemaName),
}

/// A transaction's actions and their guards, one each, in order.
#[derive(Default)]
pub(crate) struct Tx {
    actions: Vec<TransactWriteItem>,
    guards: Vec<Guard>,
}

impl Tx {
    pub fn push(&mut self, action: TransactWriteItem, guard: Guard) {
        self.actions.push(action);
        self.guards.push(guard);
    }

    pub fn len(&self) -> usize {
        self.actions.len()
    }
}

/// The largest transaction DynamoDB takes.
pub(crate) const MAX_ACTIONS: usize = 100;

/// A cancelled transaction: the guards that failed, and every reason, for messages.
#[derive(Debug)]
pub(crate) struct Cancelled {
    failed: Vec<Guard>,
    reasons: Vec<String>,
}

impl Cancelled {
    pub fn failed(&self, guard: &Guard) -> bool {
        self.failed.contains(guard)
    }

    /// The first referred-to schema found missing.
    pub fn missing_schema(&self) -> Option<&SchemaName> {
        self.failed.iter().find_map(|g| match g {
            Guard::Referenced(name) => Some(name),
            _ => None,
        })
    }

    /// A cancellation the caller has no domain answer for.
    pub fn unavailable(&self, what: impl std::fmt::Display) -> Error {
        Error::unavailable(format!("{what} was cancelled: {:?}", self.reasons))
    }
}

/// Creates the gateway's table: `pk`/`sk` strings, the keys-only indexes `gsi1`
/// (`gsi1pk`/`gsi1sk`) and `gsi2` (`gsi2pk`/`gsi2sk`, failed deliveries), on-demand billing, and TTL on `ttl`; waits until it is active.
pub async fn create_table(client: &Client, name: &str) -> Result<()> {
    let attribute = |n: &str| {
        AttributeDefinition::builder()
            .attribute_name(n)
            .attribute_type(ScalarAttributeType::S)
            .build()
            .map_err(Error::unavailable)
    };
    let key = |n: &str, t: KeyType| {
        KeySchemaElement::builder().attribute_name(n).key_type(t).build().map_err(Error::unavailable)
    };
    let index = GlobalSecondaryIndex::builder()
        .index_name(GSI1)
        .key_schema(key(GSI1PK, KeyType::Hash)?)
        .key_schema(key(GSI1SK, KeyType::Range)?)
        .projection(Projection::builder().projection_type(ProjectionType::KeysOnly).build())
        .build()
        .map_err(Error::unavailable)?;
    // Failed deliveries by subscription: sparse (only failed records carry its keys), keys-only.
    let failed = GlobalSecondaryIndex::builder()
        .index_name(GSI2)
        .key_schema(key(GSI2PK, KeyType::Hash)?)
        .key_schema(key(GSI2SK, KeyType::Range)?)
        .projection(Projection::builder().projection_type(ProjectionType::KeysOnly).build())
        .build()
        .map_err(Error::unavailable)?;
    client
        .create_table()
        .table_name(name)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(attribute(PK)?)
        .attribute_definitions(attribute(SK)?)
        .attribute_definitions(attribute(GSI1PK)?)
        .attribute_definitions(attribute(GSI1SK)?)
        .attribute_definitions(attribute(GSI2PK)?)
        .attribute_definitions(attribute(GSI2SK)?)
        .key_schema(key(PK, KeyType::Hash)?)
        .key_schema(key(SK, KeyType::Range)?)
        .global_secondary_indexes(index)
        .global_secondary_indexes(failed)
        .send()
        .await
        .map_err(|e| unavailable("CreateTable", e))?;
    for round in 0u32.. {
        let status = client
            .describe_table()
            .table_name(name)
            .send()
            .await
            .map_err(|e| unavailable("DescribeTable", e))?
            .table
            .and_then(|t| t.table_status);
        if status == Some(TableStatus::Active) {
            break;
        }
        if round > 120 {
            return Err(Error::unavailable(format!("table {name} did not become active")));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    client
        .update_time_to_live()
        .table_name(name)
        .time_to_live_specification(
            TimeToLiveSpecification::builder().attribute_name(TTL).enabled(true).build().map_err(Error::unavailable)?,
        )
        .send()
        .await
        .map_err(|e| unavailable("UpdateTimeToLive", e))?;
    Ok(())
}

pub(crate) fn unavailable(operation: &str, err: impl std::error::Error) -> Error {
    Error::unavailable(format!("DynamoDB {operation} failed: {}", DisplayErrorContext(&err)))
}

pub(crate) fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

pub(crate) fn n(value: impl ToString) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

pub(crate) fn key(pk: impl Into<String>, sk: impl Into<String>) -> Item {
    HashMap::from([(PK.to_owned(), s(pk)), (SK.to_owned(), s(sk))])
}

pub(crate) fn string_attr<'a>(item: &'a Item, name: &str) -> Result<&'a str> {
    item.get(name)
        .and_then(|v| v.as_s().ok())
        .map(String::as_str)
        .ok_or_else(|| Error::unavailable(format!("stored item has no string attribute '{name}'")))
}

pub(crate) fn to_item<T: serde::Serialize>(value: &T) -> Result<Item> {
    serde_dynamo::aws_sdk_dynamodb_1::to_item(value).map_err(Error::unavailable)
}

pub(crate) fn from_item<T: serde::de::DeserializeOwned>(item: Item) -> Result<T> {
    serde_dynamo::aws_sdk_dynamodb_1::from_item(item)
        .map_err(|e| Error::unavailable(format!("stored item does not read back: {e}")))
}

pub(crate) fn to_value<T: serde::Serialize>(value: &T) -> Result<AttributeValue> {
    serde_dynamo::aws_sdk_dynamodb_1::to_attribute_value(value).map_err(Error::unavailable)
}

/// 25 ms doubling, for DynamoDB's own retry hints (unprocessed keys, transaction conflicts).
pub(crate) fn backoff(round: u32) -> Duration {
    Duration::from_millis(25u64.saturating_mul(1 << round.min(6)))
}

/// Whether a write failed only because its condition did not hold.
pub(crate) fn condition_failed<E, R>(err: &aws_sdk_dynamodb::error::SdkError<E, R>) -> bool
where
    E: aws_sdk_dynamodb::error::ProvideErrorMetadata,
{
    err.as_service_error().and_then(|e| e.code()).is_some_and(|code| code == "ConditionalCheckFailedException")
}

/// Placeholders of an expression: every attribute name goes through `#x` (DynamoDB reserves
/// words like `name`, `status` and `ttl`) and every value through `:x`.
#[derive(Clone, Default)]
pub(crate) struct Expr {
    names: HashMap<String, String>,
    values: HashMap<String, AttributeValue>,
}

impl Expr {
    pub fn name(mut self, placeholder: &str, attribute: &str) -> Self {
        self.names.insert(placeholder.to_owned(), attribute.to_owned());
        self
    }

    pub fn value(mut self, placeholder: &str, value: AttributeValue) -> Self {
        self.values.insert(placeholder.to_owned(), value);
        self
    }

    /// DynamoDB refuses empty placeholder maps: absent instead.
    pub fn names(&self) -> Option<HashMap<String, String>> {
        (!self.names.is_empty()).then(|| self.names.clone())
    }

    pub fn values(&self) -> Option<HashMap<String, AttributeValue>> {
        (!self.values.is_empty()).then(|| self.values.clone())
    }
}

impl DynamoStore {
    pub(crate) fn tx_put(&self, item: Item, condition: Option<&str>, expr: &Expr) -> Result<TransactWriteItem> {
        let put = aws_sdk_dynamodb::types::Put::builder()
            .table_name(self.table.as_ref())
            .set_item(Some(item))
            .set_condition_expression(condition.map(str::to_owned))
            .set_expression_attribute_names(expr.names())
            .set_expression_attribute_values(expr.values())
            .build()
            .map_err(Error::unavailable)?;
        Ok(TransactWriteItem::builder().put(put).build())
    }

    pub(crate) fn tx_delete(&self, key: Item, condition: Option<&str>, expr: &Expr) -> Result<TransactWriteItem> {
        let delete = aws_sdk_dynamodb::types::Delete::builder()
            .table_name(self.table.as_ref())
            .set_key(Some(key))
            .set_condition_expression(condition.map(str::to_owned))
            .set_expression_attribute_names(expr.names())
            .set_expression_attribute_values(expr.values())
            .build()
            .map_err(Error::unavailable)?;
        Ok(TransactWriteItem::builder().delete(delete).build())
    }

    pub(crate) fn tx_update(
        &self,
        key: Item,
        update: &str,
        condition: Option<&str>,
        expr: &Expr,
    ) -> Result<TransactWriteItem> {
        let update = aws_sdk_dynamodb::types::Update::builder()
            .table_name(self.table.as_ref())
            .set_key(Some(key))
            .update_expression(update)
            .set_condition_expression(condition.map(str::to_owned))
            .set_expression_attribute_names(expr.names())
            .set_expression_attribute_values(expr.values())
            .build()
            .map_err(Error::unavailable)?;
        Ok(TransactWriteItem::builder().update(update).build())
    }
}
