//! The schema registry: schemas, their versions by number and by URI, the edges of their
//! referrers, and the deletion of a schema with every version, however many there are.

use async_trait::async_trait;
use futures_util::stream::{self, StreamExt, TryStreamExt};
use gateway_core::ports::{SchemaLookup, SchemaStore};
use gateway_core::{
    Error, Page, PageRequest, Referrer, Schema, SchemaName, SchemaUri, SchemaVersion, SchemaVersionSummary, Version,
};

use crate::items::{
    referred_schemas, schema_pk, uri_pk, version_sk, DeletingItem, SchemaItem, VersionItem, VersionKey,
    VersionSummaryItem, DELETING_SK, PK, SCHEMAS_INDEX, SCHEMA_SK, SK, URI_SK, VERSION_PREFIX,
};
use crate::referrers::{check_referred, difference};
use crate::{
    condition_failed, from_item, key, n, s, string_attr, to_item, to_value, unavailable, Cancelled, DynamoStore, Expr,
    Guard, Item, Result, Tx, MAX_ACTIONS,
};

/// Deletes in flight at once when a deletion is finished item by item.
const DELETE_CONCURRENCY: usize = 16;
/// How often a write is tried again after it met what a deletion left, or a change since it read.
const ATTEMPTS: usize = 3;
/// What a replace changes: its description, its mode, and when.
const CHANGED: &[&str] = &["compatibility", "description", "updatedAt", "revision"];
/// What adding a version changes, too.
const ADDED: &[&str] = &["compatibility", "description", "updatedAt", "revision", "latestVersion"];

fn not_found(name: &SchemaName) -> Error {
    Error::NotFound { what: "schema", id: name.to_string() }
}

fn revision_mismatch(name: &SchemaName, current: Version) -> Error {
    Error::VersionMismatch { what: "schema", id: name.to_string(), current }
}

/// The error of a cancelled write whose own conditions held: a schema it refers to is gone, or
/// something the API does not write.
fn referred_or_unavailable(cancelled: &Cancelled, what: impl std::fmt::Display) -> Error {
    match cancelled.missing_schema() {
        Some(schema) => not_found(schema),
        None => cancelled.unavailable(what),
    }
}

/// The update that writes `attributes` of `schema` (REMOVE of its description when it has none),
/// and `refers_to` if given. The caller adds its condition's placeholders (`#f<i>`, `:f<i>`,
/// `#description` and `#refersTo`, `:refersTo` are taken).
fn schema_update(schema: &Schema, attributes: &[&str], refers_to: Option<&[SchemaName]>) -> Result<(String, Expr)> {
    // Taken from the item, so that each attribute is written as the item writes it.
    let item = to_item(&SchemaItem::new(schema, Vec::new()))?;
    let mut expr = Expr::default();
    let mut set = Vec::new();
    for (i, attribute) in attributes.iter().enumerate() {
        if let Some(value) = item.get(*attribute) {
            set.push(format!("#f{i} = :f{i}"));
            expr = expr.name(&format!("#f{i}"), attribute).value(&format!(":f{i}"), value.clone());
        }
    }
    if let Some(refers_to) = refers_to {
        set.push("#refersTo = :refersTo".to_owned());
        expr = expr.name("#refersTo", "refersTo").value(":refersTo", to_value(&refers_to)?);
    }
    let mut update = format!("SET {}", set.join(", "));
    if schema.description.is_none() {
        update.push_str(" REMOVE #description");
        expr = expr.name("#description", "description");
    }
    Ok((update, expr))
}

impl DynamoStore {
    async fn schema_item(&self, name: &SchemaName) -> Result<Option<SchemaItem>> {
        self.get(key(schema_pk(name), SCHEMA_SK)).await?.map(from_item).transpose()
    }

    /// The version's two items: under its schema (its number must be free: a version never
    /// changes) and by URI (which must be free across the registry: `Guard::Uri`).
    fn push_version(&self, tx: &mut Tx, version: &SchemaVersion) -> Result<()> {
        let absent = Expr::default().name("#pk", PK);
        let condition = Some("attribute_not_exists(#pk)");
        tx.push(self.tx_put(to_item(&VersionItem::under_schema(version))?, condition, &absent)?, Guard::Unguarded);
        tx.push(self.tx_put(to_item(&VersionItem::by_uri(version))?, condition, &absent)?, Guard::Uri);
        Ok(())
    }

    /// After a write found `uri` taken: `SchemaUriTaken` naming the version that holds it, unless
    /// that version was left by a deletion that did not finish (its schema item is gone), which
    /// is then finished; `Ok` means the write may be tried again.
    async fn uri_taken(&self, uri: &SchemaUri) -> Result<()> {
        let Some(item) = self.get(key(uri_pk(uri), URI_SK)).await? else {
            // Freed since.
            return Ok(());
        };
        let holder: VersionItem = from_item(item)?;
        if self.schema_item(&holder.name).await?.is_some() {
            return Err(Error::SchemaUriTaken { uri: uri.clone(), schema: holder.name, version: holder.version });
        }
        self.finish_deleting(&holder.name).await
    }

    /// The keys and URIs of the schema's version items (a projection; a consistent Query).
    async fn version_keys(&self, name: &SchemaName) -> Result<Vec<VersionKey>> {
        let query = self
            .prefix_query(schema_pk(name), VERSION_PREFIX)
            .projection_expression("#sk, #version, #uri")
            .expression_attribute_names("#version", "version")
            .expression_attribute_names("#uri", "uri");
        self.query_items(query, None, None).await?.into_iter().map(from_item).collect()
    }

    /// The condition-guarded delete of a version's URI item: only while it is that version's
    /// (after a deletion that did not finish, the URI may be another schema's by now).
    fn uri_delete(&self, name: &SchemaName, version: &VersionKey) -> Result<(Item, &'static str, Expr)> {
        let expr = Expr::default()
            .name("#pk", PK)
            .name("#name", "name")
            .name("#version", "version")
            .value(":name", s(name.as_str()))
            .value(":version", n(version.version));
        let condition = "attribute_not_exists(#pk) OR (#name = :name AND #version = :version)";
        Ok((key(uri_pk(&version.uri), URI_SK), condition, expr))
    }

    /// Deletes the schema as read, if it is still at that revision with no referrer, with its
    /// versions and its own edges. `false` if it changed since it was read.
    ///
    /// A schema with few versions goes in one transaction. Otherwise the first transaction
    /// deletes the schema item, its edges and as many URI items as fit, and writes `#DELETING`;
    /// [`Self::finish_deleting`] does the rest.
    async fn delete_schema_as_read(&self, current: &SchemaItem) -> Result<bool> {
        let name = &current.name;
        let pk = schema_pk(name);
        let versions = self.version_keys(name).await?;
        let mut tx = Tx::default();
        let expr = Expr::default()
            .name("#revision", "revision")
            .name("#count", "referrerCount")
            .value(":revision", n(current.revision.0))
            .value(":zero", n(0));
        let condition = "#revision = :revision AND (attribute_not_exists(#count) OR #count = :zero)";
        tx.push(self.tx_delete(key(&pk, SCHEMA_SK), Some(condition), &expr)?, Guard::Subject);
        // The revision holds what it refers to to what was read.
        self.unrefer(&mut tx, &Referrer::Schema(name.clone()), &current.refers_to)?;
        let in_one = tx.len() + 2 * versions.len() <= MAX_ACTIONS;
        if !in_one {
            let mark = DeletingItem { pk: pk.clone(), sk: DELETING_SK.to_owned(), name: name.clone() };
            tx.push(self.tx_put(to_item(&mark)?, None, &Expr::default())?, Guard::Unguarded);
        }
        // URI items first: they are what the rest of the registry reads.
        let room = MAX_ACTIONS - tx.len();
        for version in versions.iter().take(if in_one { versions.len() } else { room }) {
            let (uri, condition, expr) = self.uri_delete(name, version)?;
            tx.push(self.tx_delete(uri, Some(condition), &expr)?, Guard::Uri);
        }
        if in_one {
            for version in &versions {
                tx.push(self.tx_delete(key(&pk, &version.sk), None, &Expr::default())?, Guard::Unguarded);
            }
        }
        match self.transact_guarded(tx).await? {
            Ok(()) if in_one => Ok(true),
            Ok(()) => self.finish_deleting(name).await.map(|()| true),
            Err(cancelled) if cancelled.failed(&Guard::Subject) => Ok(false),
            Err(cancelled) => Err(cancelled.unavailable(format_args!("deleting schema '{name}'"))),
        }
    }

    /// Finishes a deletion that wrote `#DELETING`: the URI items (each only if it is still this
    /// schema's), then the version items, then the mark. Every step can be done again, so
    /// whoever meets the mark does it, even twice at once: a delete of the name, a register of
    /// the name, a version claiming one of the URIs.
    async fn finish_deleting(&self, name: &SchemaName) -> Result<()> {
        let pk = schema_pk(name);
        let versions = self.version_keys(name).await?;
        let uris = versions.iter().map(|version| {
            let (uri, condition, expr) = self.uri_delete(name, version)?;
            Ok(self.delete_item(uri, Some((condition, expr))))
        });
        let uris = uris.collect::<Result<Vec<_>>>()?;
        stream::iter(uris).buffer_unordered(DELETE_CONCURRENCY).try_collect::<Vec<()>>().await?;
        let items: Vec<_> = versions.iter().map(|version| self.delete_item(key(&pk, &version.sk), None)).collect();
        stream::iter(items).buffer_unordered(DELETE_CONCURRENCY).try_collect::<Vec<()>>().await?;
        self.delete_item(key(&pk, DELETING_SK), None).await
    }

    /// Deletes an item, if `condition` holds (a failed condition is not an error: the item is
    /// someone else's).
    async fn delete_item(&self, key: Item, condition: Option<(&str, Expr)>) -> Result<()> {
        let (condition, expr) = condition.unzip();
        let expr = expr.unwrap_or_default();
        let result = self
            .client
            .delete_item()
            .table_name(self.table.as_ref())
            .set_key(Some(key))
            .set_condition_expression(condition.map(str::to_owned))
            .set_expression_attribute_names(expr.names())
            .set_expression_attribute_values(expr.values())
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) if condition_failed(&e) => Ok(()),
            Err(e) => Err(unavailable("DeleteItem", e)),
        }
    }
}

#[async_trait]
impl SchemaLookup for DynamoStore {
    /// One consistent GetItem of `URI#<uri>`: the URI item holds the whole version.
    async fn schema_by_uri(&self, uri: &SchemaUri) -> Result<Option<SchemaVersion>> {
        let item = self.get(key(uri_pk(uri), URI_SK)).await?;
        item.map(|item| from_item::<VersionItem>(item).map(VersionItem::into_version)).transpose()
    }
}

#[async_trait]
impl SchemaStore for DynamoStore {
    async fn create_schema(&self, schema: &Schema, first: &SchemaVersion) -> Result<()> {
        let refers_to = referred_schemas(&first.references, Some(&schema.name));
        check_referred(refers_to.len())?;
        let pk = schema_pk(&schema.name);
        let absent = Expr::default().name("#pk", PK);
        for _ in 0..ATTEMPTS {
            let mut tx = Tx::default();
            let item = to_item(&SchemaItem::new(schema, refers_to.clone()))?;
            tx.push(self.tx_put(item, Some("attribute_not_exists(#pk)"), &absent)?, Guard::Subject);
            // The versions of an earlier schema of the name may still be being deleted. (A
            // ConditionCheck would need `dynamodb:ConditionCheckItem`, which the handlers are not
            // granted; a Delete of the mark conditional on its absence is the same check.)
            let not_deleting = self.tx_delete(key(&pk, DELETING_SK), Some("attribute_not_exists(#pk)"), &absent)?;
            tx.push(not_deleting, Guard::NotDeleting);
            self.push_version(&mut tx, first)?;
            self.refer(&mut tx, &Referrer::Schema(schema.name.clone()), &refers_to)?;
            match self.transact_guarded(tx).await? {
                Ok(()) => return Ok(()),
                Err(cancelled) if cancelled.failed(&Guard::Subject) => {
                    return Err(Error::SchemaExists(schema.name.clone()))
                }
                Err(cancelled) if cancelled.failed(&Guard::NotDeleting) => self.finish_deleting(&schema.name).await?,
                Err(cancelled) if cancelled.failed(&Guard::Uri) => self.uri_taken(&first.uri).await?,
                Err(cancelled) => {
                    return Err(referred_or_unavailable(&cancelled, format_args!("creating schema '{}'", schema.name)))
                }
            }
        }
        Err(Error::unavailable(format!("schema '{}' could not be written after {ATTEMPTS} attempts", schema.name)))
    }

    async fn add_schema_version(&self, schema: &Schema, version: &SchemaVersion) -> Result<()> {
        let name = &schema.name;
        let prev = Version(schema.revision.0.saturating_sub(1));
        let referred = referred_schemas(&version.references, Some(name));
        for _ in 0..ATTEMPTS {
            // The schemas it refers to for the first time get an edge each. Which they are, the
            // schema item says (`refersTo`), as of the revision the write is conditional on.
            let (refers_to, added) = if referred.is_empty() {
                (None, Vec::new())
            } else {
                let current = self.schema_item(name).await?.ok_or_else(|| not_found(name))?;
                if current.revision != prev {
                    return Err(revision_mismatch(name, current.revision));
                }
                let added = difference(&referred, &current.refers_to);
                let mut all = current.refers_to;
                all.extend(added.iter().cloned());
                all.sort();
                check_referred(all.len())?;
                (Some(all), added)
            };
            let (update, expr) = schema_update(schema, ADDED, refers_to.as_deref())?;
            let expr = expr.name("#pk", PK).name("#revision", "revision").value(":prev", n(prev.0));
            let mut tx = Tx::default();
            let condition = Some("attribute_exists(#pk) AND #revision = :prev");
            tx.push(self.tx_update(key(schema_pk(name), SCHEMA_SK), &update, condition, &expr)?, Guard::Subject);
            self.push_version(&mut tx, version)?;
            self.refer(&mut tx, &Referrer::Schema(name.clone()), &added)?;
            match self.transact_guarded(tx).await? {
                Ok(()) => return Ok(()),
                Err(cancelled) if cancelled.failed(&Guard::Subject) => {
                    return Err(match self.schema_item(name).await? {
                        None => not_found(name),
                        Some(current) => revision_mismatch(name, current.revision),
                    })
                }
                Err(cancelled) if cancelled.failed(&Guard::Uri) => self.uri_taken(&version.uri).await?,
                Err(cancelled) => {
                    return Err(referred_or_unavailable(
                        &cancelled,
                        format_args!("adding version {} to schema '{name}'", version.version),
                    ))
                }
            }
        }
        Err(Error::unavailable(format!("version {} of schema '{name}' could not be written", version.version)))
    }

    async fn get_schema(&self, name: &SchemaName) -> Result<Option<Schema>> {
        Ok(self.schema_item(name).await?.map(SchemaItem::into_schema))
    }

    async fn list_schemas(&self, page: &PageRequest) -> Result<Page<Schema>> {
        let (pks, next_cursor) = self.index_page(SCHEMAS_INDEX, "SCHEMA#", SCHEMA_SK, page).await?;
        let items = self
            .listed_items(pks, SCHEMA_SK)
            .await?
            .into_iter()
            .map(|item| from_item::<SchemaItem>(item).map(SchemaItem::into_schema))
            .collect::<Result<_>>()?;
        Ok(Page { items, next_cursor })
    }

    async fn get_schema_version(&self, name: &SchemaName, version: u32) -> Result<Option<SchemaVersion>> {
        let pk = schema_pk(name);
        let mut found = self.batch_get(vec![key(&pk, SCHEMA_SK), key(&pk, version_sk(version))]).await?;
        // A version outlives its schema item only while a deletion is being finished.
        if !found.contains_key(&(pk.clone(), SCHEMA_SK.to_owned())) {
            return Ok(None);
        }
        let item = found.remove(&(pk, version_sk(version)));
        item.map(|item| from_item::<VersionItem>(item).map(VersionItem::into_version)).transpose()
    }

    /// One consistent Query of the partition's `#` items (followed past 1 MB), projected to what
    /// a listing shows (the documents stay unread): the schema item and every version, in number
    /// order; not the edges.
    async fn schema_versions(&self, name: &SchemaName) -> Result<Vec<SchemaVersionSummary>> {
        let mut query = self.prefix_query(schema_pk(name), "#").projection_expression(
            std::iter::once("#sk".to_owned())
                .chain((0..VersionSummaryItem::ATTRIBUTES.len()).map(|i| format!("#a{i}")))
                .collect::<Vec<_>>()
                .join(", "),
        );
        for (i, attribute) in VersionSummaryItem::ATTRIBUTES.iter().enumerate() {
            query = query.expression_attribute_names(format!("#a{i}"), *attribute);
        }
        let mut exists = false;
        let mut versions = Vec::new();
        for item in self.query_items(query, None, None).await? {
            let sk = string_attr(&item, SK)?;
            if sk == SCHEMA_SK {
                exists = true;
            } else if sk.starts_with(VERSION_PREFIX) {
                versions.push(from_item::<VersionSummaryItem>(item)?.into_summary());
            }
        }
        // Versions without their schema item are what a deletion has not finished with.
        Ok(if exists { versions } else { Vec::new() })
    }

    async fn replace_schema(&self, schema: &Schema) -> Result<()> {
        let name = &schema.name;
        let prev = Version(schema.revision.0.saturating_sub(1));
        let (update, expr) = schema_update(schema, CHANGED, None)?;
        let expr = expr.name("#pk", PK).name("#revision", "revision").value(":prev", n(prev.0));
        let condition = "attribute_exists(#pk) AND #revision = :prev";
        if self.update_if(key(schema_pk(name), SCHEMA_SK), update, condition, &expr).await? {
            return Ok(());
        }
        match self.schema_item(name).await? {
            None => Err(not_found(name)),
            Some(current) => Err(revision_mismatch(name, current.revision)),
        }
    }

    async fn delete_schema(&self, name: &SchemaName, expected: Option<Version>) -> Result<()> {
        let pk = schema_pk(name);
        for _ in 0..5 {
            let mut found = self.batch_get(vec![key(&pk, SCHEMA_SK), key(&pk, DELETING_SK)]).await?;
            let current = found.remove(&(pk.clone(), SCHEMA_SK.to_owned())).map(from_item::<SchemaItem>).transpose()?;
            let Some(current) = current else {
                if found.contains_key(&(pk.clone(), DELETING_SK.to_owned())) {
                    // An earlier delete went through but did not finish: finish it.
                    self.finish_deleting(name).await?;
                }
                return Err(not_found(name));
            };
            if expected.is_some_and(|v| v != current.revision) {
                return Err(revision_mismatch(name, current.revision));
            }
            if current.referrer_count > 0 {
                let referrers = self.referrers_of(name).await?;
                if !referrers.is_empty() {
                    return Err(Error::SchemaReferenced { schema: name.clone(), referrers });
                }
                // The last referrer went between the two reads: read again.
                continue;
            }
            if self.delete_schema_as_read(&current).await? {
                return Ok(());
            }
        }
        Err(Error::unavailable(format!("schema '{name}' kept changing while it was being deleted")))
    }
}
