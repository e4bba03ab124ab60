//! Referrers: which events and schemas refer to a schema. Each is an edge item in the
//! referred-to schema's partition, counted in its `referrerCount`, both written or removed in the
//! transaction that changes the referrer: a schema's delete is then one write conditional on the
//! count, and its refusal names every referrer with one Query.

use gateway_core::{Error, Referrer, SchemaName, Violation};

use crate::items::{referrer_sk, schema_pk, ReferrerItem, PK, REFERRER_PREFIX, SCHEMA_SK};
use crate::{from_item, key, n, to_item, DynamoStore, Expr, Guard, Result, Tx};

/// The most schemas one event or one schema may refer to, each counted once whatever its
/// versions. Each one referred to or given up takes two actions (the edge and the count), and the
/// largest write, a replace of an event that swaps every schema it refers to for others, takes
/// 1 + 2 × 24 + 2 × 24 = 97 of the 100 actions a transaction holds.
pub(crate) use gateway_core::schema::MAX_REFERRED_SCHEMAS;

/// Refuses a referrer that would refer to more schemas than a transaction can keep edges for.
pub(crate) fn check_referred(count: usize) -> Result<()> {
    if count <= MAX_REFERRED_SCHEMAS {
        return Ok(());
    }
    Err(Error::invalid_body(vec![Violation::new(
        "/schema",
        format!(
            "the schema refers to {count} registered schemas; at most {MAX_REFERRED_SCHEMAS} may be referred to by one \
             event or schema (each counted once, whatever its versions)"
        ),
    )]))
}

/// The names in `a` that are not in `b`; both sorted.
pub(crate) fn difference(a: &[SchemaName], b: &[SchemaName]) -> Vec<SchemaName> {
    a.iter().filter(|name| b.binary_search(name).is_err()).cloned().collect()
}

fn count_by(by: i64) -> Expr {
    Expr::default().name("#pk", PK).name("#count", "referrerCount").value(":by", n(by))
}

impl DynamoStore {
    /// Makes `referrer` refer to `schemas`, which it did not refer to: each must exist (its
    /// guard fails otherwise), and gains the edge and one in its count.
    pub(crate) fn refer(&self, tx: &mut Tx, referrer: &Referrer, schemas: &[SchemaName]) -> Result<()> {
        for schema in schemas {
            let count = self.tx_update(
                key(schema_pk(schema), SCHEMA_SK),
                "ADD #count :by",
                Some("attribute_exists(#pk)"),
                &count_by(1),
            )?;
            tx.push(count, Guard::Referenced(schema.clone()));
            let edge = self.tx_put(to_item(&ReferrerItem::new(schema, referrer))?, None, &Expr::default())?;
            tx.push(edge, Guard::Unguarded);
        }
        Ok(())
    }

    /// Makes `referrer` stop referring to `schemas`, which it did refer to. A schema with an edge
    /// cannot have been deleted, so the count's condition (without it, `ADD` on a missing schema
    /// would make an item of nothing but a count) only fails on a table the API did not write.
    pub(crate) fn unrefer(&self, tx: &mut Tx, referrer: &Referrer, schemas: &[SchemaName]) -> Result<()> {
        for schema in schemas {
            let edge = self.tx_delete(key(schema_pk(schema), referrer_sk(referrer)), None, &Expr::default())?;
            tx.push(edge, Guard::Unguarded);
            let count = self.tx_update(
                key(schema_pk(schema), SCHEMA_SK),
                "ADD #count :by",
                Some("attribute_exists(#pk)"),
                &count_by(-1),
            )?;
            tx.push(count, Guard::Unguarded);
        }
        Ok(())
    }

    /// Every referrer of the schema, sorted (events first, then schemas, each by name): its
    /// edges, in one consistent Query (followed past 1 MB, about 7,000 edges).
    pub(crate) async fn referrers_of(&self, name: &SchemaName) -> Result<Vec<Referrer>> {
        let query = self.prefix_query(schema_pk(name), REFERRER_PREFIX);
        let mut referrers = self
            .query_items(query, None, None)
            .await?
            .into_iter()
            .map(|item| {
                let edge: ReferrerItem = from_item(item)?;
                edge.referrer()
                    .ok_or_else(|| Error::unavailable(format!("stored edge '{}' names no event or schema", edge.sk)))
            })
            .collect::<Result<Vec<_>>>()?;
        referrers.sort();
        Ok(referrers)
    }
}
