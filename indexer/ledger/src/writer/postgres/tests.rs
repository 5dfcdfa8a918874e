//! The writer's reads on a ledger of many users and keys: a batch reaches its rows through the
//! primary keys, so its cost does not grow with the number of users.
use super::LOAD;
use crate::testing::TempDatabase;
use sqlx::{Connection, Executor, PgConnection, Row};

/// The plan's nodes that read `table`, each with the lines that describe it.
fn nodes_reading<'a>(plan: &'a str, table: &str) -> Vec<&'a str> {
    let reads = format!(" on {table} (");
    plan.split("->")
        .filter(|node| {
            node.lines()
                .next()
                .is_some_and(|line| line.contains(&reads))
        })
        .collect()
}

#[tokio::test]
async fn a_batch_reads_its_users_and_keys_through_their_primary_keys() {
    let db = TempDatabase::postgres().await.unwrap();
    let ledger = db.ledger().await;
    let mut conn = PgConnection::connect(&db.url).await.unwrap();
    conn.execute(
        "INSERT INTO balances (user_key, credited)
             SELECT 'user' || i, 100 FROM generate_series(1, 20000) i;
         INSERT INTO key_budgets (key_id, user_key, budget)
             SELECT 'key' || i, 'user' || i, 100 FROM generate_series(1, 20000) i;
         INSERT INTO reservations (id, user_key, amount, created_at, expires_at, key_id)
             VALUES ('held', 'user9', 5, 1, 2, 'key9');
         ANALYZE",
    )
    .await
    .unwrap();
    let texts = |values: &[&str]| values.iter().map(|v| v.to_string()).collect::<Vec<_>>();
    // A batch settling reservation `held` (user9, key9) and holding for user7 with key5.
    let rows = sqlx::query(&format!("EXPLAIN (ANALYZE, COSTS OFF) {LOAD}"))
        .bind(texts(&["held"]))
        .bind(texts(&["key5"]))
        .bind(texts(&["user7"]))
        .bind(texts(&["debit1"]))
        .bind(texts(&["user7"]))
        .bind(vec![1_i64])
        .bind(texts(&[]))
        .fetch_all(&mut conn)
        .await
        .unwrap();
    let plan: String = rows
        .iter()
        .map(|row| row.get::<String, _>(0) + "\n")
        .collect();
    for table in ["balances", "key_budgets"] {
        let nodes = nodes_reading(&plan, table);
        assert!(!nodes.is_empty(), "the batch reads {table}:\n{plan}");
        for node in nodes {
            // An index scan, or a bitmap heap scan over one (its condition rechecked).
            let through_index = node.contains("Index Cond") || node.contains("Recheck Cond");
            assert!(
                through_index && !node.contains("Rows Removed by Filter"),
                "{table} is read through its primary key, not scanned:\n{plan}"
            );
            assert!(
                node.contains("rows=2 "),
                "the asked row and the reservation's, each once:\n{plan}"
            );
        }
    }
    conn.close().await.unwrap();
    ledger.close().await;
    db.remove().await;
}
