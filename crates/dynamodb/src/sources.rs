//! Sources: one partition (`SOURCES`), so that a batch of native records reads them all in one
//! Query; each event's `sourceCount` is kept in the same transactions, as for subscriptions.

use async_trait::async_trait;
use gateway_core::ports::SourceStore;
use gateway_core::{Error, EventName, Page, PageRequest, Source, SourceName, Version};

use crate::items::{event_pk, source_sk, SourceItem, DEF_SK, PK, SK, SOURCES_PK, SOURCE_PREFIX};
use crate::{condition_failed, from_item, key, n, s, string_attr, to_item, unavailable, DynamoStore, Expr, Result};

impl DynamoStore {
    async fn get_source_item(&self, name: &SourceName) -> Result<Option<Source>> {
        let out = self
            .client
            .get_item()
            .table_name(self.table.as_ref())
            .set_key(Some(key(SOURCES_PK, source_sk(name))))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| unavailable("GetItem", e))?;
        out.item.map(|item| from_item::<SourceItem>(item).map(SourceItem::into_source)).transpose()
    }

    fn sources_query(&self) -> aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder {
        self.prefix_query(SOURCES_PK, SOURCE_PREFIX)
    }

    /// The sources that trigger `event`: read from the one partition, filtered (there are few).
    pub(crate) async fn sources_of(&self, event: &EventName) -> Result<Vec<Source>> {
        let query = self
            .sources_query()
            .filter_expression("#event = :event")
            .expression_attribute_names("#event", "event")
            .expression_attribute_values(":event", s(event.as_str()));
        self.query_items(query, None, None)
            .await?
            .into_iter()
            .map(|item| from_item::<SourceItem>(item).map(SourceItem::into_source))
            .collect()
    }
}

#[async_trait]
impl SourceStore for DynamoStore {
    async fn create_source(&self, source: &Source) -> Result<()> {
        let count = Expr::default().name("#pk", PK).name("#count", "sourceCount").value(":one", n(1));
        let actions = vec![
            self.tx_update(
                key(event_pk(&source.event), DEF_SK),
                "ADD #count :one",
                Some("attribute_exists(#pk)"),
                &count,
            )?,
            self.tx_put(
                to_item(&SourceItem::new(source))?,
                Some("attribute_not_exists(#pk)"),
                &Expr::default().name("#pk", PK),
            )?,
        ];
        match self.transact(actions).await? {
            Ok(()) => Ok(()),
            Err(reasons) if reasons.first().is_some_and(|r| r == "ConditionalCheckFailed") => {
                Err(Error::NotFound { what: "event", id: source.event.to_string() })
            }
            Err(reasons) if reasons.get(1).is_some_and(|r| r == "ConditionalCheckFailed") => {
                Err(Error::SourceExists(source.name.clone()))
            }
            Err(reasons) => {
                Err(Error::unavailable(format!("creating source {} was cancelled: {reasons:?}", source.name)))
            }
        }
    }

    async fn get_source(&self, name: &SourceName) -> Result<Option<Source>> {
        self.get_source_item(name).await
    }

    async fn list_sources(&self, page: &PageRequest) -> Result<Page<Source>> {
        let (items, next_cursor) = self
            .query_page(self.sources_query(), page, &[PK, SK], |c| {
                c[PK] == SOURCES_PK && c[SK].starts_with(SOURCE_PREFIX)
            })
            .await?;
        let items = items
            .into_iter()
            .map(|item| from_item::<SourceItem>(item).map(SourceItem::into_source))
            .collect::<Result<_>>()?;
        Ok(Page { items, next_cursor })
    }

    async fn replace_source(&self, source: &Source) -> Result<()> {
        let put = self
            .client
            .put_item()
            .table_name(self.table.as_ref())
            .set_item(Some(to_item(&SourceItem::new(source))?))
            .condition_expression("#version = :prev AND #event = :event")
            .expression_attribute_names("#version", "version")
            .expression_attribute_names("#event", "event")
            .expression_attribute_values(":prev", n(source.version.0 - 1))
            .expression_attribute_values(":event", s(source.event.as_str()))
            .send()
            .await;
        match put {
            Ok(_) => Ok(()),
            Err(e) if condition_failed(&e) => match self.get_source_item(&source.name).await? {
                None => Err(Error::NotFound { what: "source", id: source.name.to_string() }),
                Some(current) => Err(Error::VersionMismatch {
                    what: "source",
                    id: source.name.to_string(),
                    current: current.version,
                }),
            },
            Err(e) => Err(unavailable("PutItem", e)),
        }
    }

    async fn delete_source(&self, name: &SourceName, expected: Option<Version>) -> Result<()> {
        for _ in 0..3 {
            let Some(current) = self.get_source_item(name).await? else {
                return Err(Error::NotFound { what: "source", id: name.to_string() });
            };
            if expected.is_some_and(|v| v != current.version) {
                return Err(Error::VersionMismatch { what: "source", id: name.to_string(), current: current.version });
            }
            let guard = Expr::default().name("#version", "version").value(":v", n(current.version.0));
            let count = Expr::default().name("#pk", PK).name("#count", "sourceCount").value(":minus", n(-1));
            let actions = vec![
                self.tx_delete(key(SOURCES_PK, source_sk(name)), Some("#version = :v"), &guard)?,
                self.tx_update(
                    key(event_pk(&current.event), DEF_SK),
                    "ADD #count :minus",
                    Some("attribute_exists(#pk)"),
                    &count,
                )?,
            ];
            // Cancelled: it changed or went since we read it; read again.
            if self.transact(actions).await?.is_ok() {
                return Ok(());
            }
        }
        Err(Error::unavailable(format!("source {name} kept changing while it was being deleted")))
    }

    async fn all_sources(&self) -> Result<Vec<Source>> {
        self.query_items(self.sources_query(), None, None)
            .await?
            .into_iter()
            .map(|item| {
                // Only source items live here; anything else would be a store the API never wrote.
                string_attr(&item, SK)?;
                from_item::<SourceItem>(item).map(SourceItem::into_source)
            })
            .collect()
    }
}
