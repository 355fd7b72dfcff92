//! The PostgreSQL schema, created and migrated when a store opens. Every migration runs in one
//! transaction that first takes a transaction-scoped advisory lock, so nodes starting at once
//! take turns: the first applies what is missing, the others find it applied. The version
//! reached is kept in `pollerd_schema`.

use deadpool_postgres::Client;

/// Key of the advisory lock held while the schema is checked or migrated ("pollerd" in ASCII).
const SCHEMA_LOCK: i64 = 0x0070_6f6c_6c65_7264;

/// The migrations in order; migration `n` (1-based) brings the schema to version `n`. Never edit
/// one that has shipped: add the next.
const MIGRATIONS: &[&str] = &[
    // 1: the state of one host's sled store, as tables. Times are milliseconds since the epoch
    // (what sled keeps, so both engines round the same way); object ids are bytes (a provider's
    // id may hold a NUL, which text cannot).
    r#"
    CREATE TABLE pollerd_watermarks (
        instance text NOT NULL,
        resource text NOT NULL,
        watermark_ms bigint NOT NULL,
        PRIMARY KEY (instance, resource)
    );
    CREATE TABLE pollerd_seen (
        instance text NOT NULL,
        resource text NOT NULL,
        object_id bytea NOT NULL,
        seen_ms bigint NOT NULL,
        PRIMARY KEY (instance, resource, object_id)
    );
    CREATE TABLE pollerd_known_ids (
        instance text NOT NULL,
        resource text NOT NULL,
        object_id bytea NOT NULL,
        PRIMARY KEY (instance, resource, object_id)
    );
    CREATE TABLE pollerd_reconciled (
        instance text NOT NULL,
        resource text NOT NULL,
        PRIMARY KEY (instance, resource)
    );
    CREATE TABLE pollerd_outbox (
        seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        instance text NOT NULL,
        resource text NOT NULL,
        event_id text NOT NULL,
        body bytea NOT NULL,
        created_ms bigint NOT NULL,
        attempts integer NOT NULL DEFAULT 0,
        next_attempt_ms bigint,
        last_error text
    );
    CREATE INDEX pollerd_outbox_queue ON pollerd_outbox (instance, resource, seq);
    CREATE TABLE pollerd_dead_letters (
        id text PRIMARY KEY,
        instance text NOT NULL,
        resource text NOT NULL,
        event_id text NOT NULL,
        body bytea NOT NULL,
        created_ms bigint NOT NULL,
        attempts integer NOT NULL,
        last_status integer,
        last_error text NOT NULL,
        dead_ms bigint NOT NULL
    );
    CREATE TABLE pollerd_corrupt_entries (
        id text PRIMARY KEY,
        instance text,
        resource text,
        event_id text,
        created_ms bigint,
        found_ms bigint NOT NULL,
        reason text NOT NULL,
        raw bytea NOT NULL
    );
    CREATE SEQUENCE pollerd_corrupt_ids;
    "#,
    // 2: nodes sharing the database, and one lease per instance. Times are the server's clock
    // (`now()`), so the nodes' clocks never have to agree. A lease with no owner is free; its
    // epoch only grows (every claim adds one), so a write checked against the epoch its node
    // claimed is refused once anyone else has claimed the instance since.
    r#"
    CREATE TABLE pollerd_nodes (
        node_id text PRIMARY KEY,
        started_at timestamptz NOT NULL DEFAULT now(),
        heartbeat_at timestamptz NOT NULL DEFAULT now()
    );
    CREATE TABLE pollerd_leases (
        instance text PRIMARY KEY,
        owner text,
        epoch bigint NOT NULL DEFAULT 0,
        expires_at timestamptz NOT NULL DEFAULT now()
    );
    CREATE INDEX pollerd_leases_owner ON pollerd_leases (owner);
    "#,
    // 3: queued bodies (one page's batch of records is a megabyte and more) compressed with lz4
    // instead of the default pglz, which cost PostgreSQL about 70 ms of CPU per page of 100
    // notifications and capped ingest. A server built without lz4 (or older than 14) keeps
    // pglz. (Bodies stay out of the row past 2 kB, as by default, so the scans that count the
    // outbox or list its queues read a narrow table.)
    r#"
    DO $$
    BEGIN
        ALTER TABLE pollerd_outbox ALTER COLUMN body SET COMPRESSION lz4;
        ALTER TABLE pollerd_dead_letters ALTER COLUMN body SET COMPRESSION lz4;
    EXCEPTION WHEN feature_not_supported OR syntax_error THEN
        RAISE NOTICE 'pollerd: lz4 is not available, queued bodies stay compressed with pglz';
    END
    $$;
    "#,
    // 4: the seen set as pages: a page commit's seen ids in one row (see `seen.rs`), and a
    // version per resource that every change of its set bumps, so a node can answer lookups
    // from memory. The rows of version 1 become one page per resource.
    r#"
    CREATE TABLE pollerd_seen_pages (
        instance text NOT NULL,
        resource text NOT NULL,
        page bigint GENERATED ALWAYS AS IDENTITY,
        oldest_ms bigint NOT NULL,
        newest_ms bigint NOT NULL,
        entries bytea NOT NULL,
        PRIMARY KEY (instance, resource, page)
    );
    CREATE TABLE pollerd_seen_state (
        instance text NOT NULL,
        resource text NOT NULL,
        version bigint NOT NULL,
        PRIMARY KEY (instance, resource)
    );
    INSERT INTO pollerd_seen_pages (instance, resource, oldest_ms, newest_ms, entries)
        SELECT instance, resource, min(seen_ms), max(seen_ms),
               string_agg(int4send(length(object_id)) || object_id || int8send(seen_ms), ''::bytea)
        FROM pollerd_seen GROUP BY instance, resource;
    INSERT INTO pollerd_seen_state (instance, resource, version)
        SELECT DISTINCT instance, resource, 1 FROM pollerd_seen;
    DROP TABLE pollerd_seen;
    DO $$
    BEGIN
        ALTER TABLE pollerd_seen_pages ALTER COLUMN entries SET COMPRESSION lz4;
    EXCEPTION WHEN feature_not_supported OR syntax_error THEN
        RAISE NOTICE 'pollerd: lz4 is not available, seen pages stay compressed with pglz';
    END
    $$;
    "#,
];

/// The schema version this build writes and reads.
pub(super) fn current_version() -> i32 {
    MIGRATIONS.len() as i32
}

/// Creates or migrates the schema; Err(reason) names what failed. A database migrated by a newer
/// pollerd is refused: this build does not know its tables.
pub(super) async fn migrate(client: &mut Client) -> Result<(), String> {
    let step = |what: &str, e: tokio_postgres::Error| format!("{what}: {}", super::describe(&e));
    let tx = client.transaction().await.map_err(|e| step("begin", e))?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&SCHEMA_LOCK])
        .await
        .map_err(|e| step("take the schema lock", e))?;
    tx.batch_execute("CREATE TABLE IF NOT EXISTS pollerd_schema (version integer NOT NULL)")
        .await
        .map_err(|e| step("create pollerd_schema", e))?;
    let row = tx
        .query_one("SELECT max(version) FROM pollerd_schema", &[])
        .await
        .map_err(|e| step("read the schema version", e))?;
    let found: i32 = row.get::<_, Option<i32>>(0).unwrap_or(0);
    if found > current_version() {
        return Err(format!(
            "the database holds schema version {found}, newer than this pollerd's {}",
            current_version()
        ));
    }
    let start = usize::try_from(found).unwrap_or(0);
    for (index, migration) in MIGRATIONS.iter().enumerate().skip(start) {
        let version = index as i32 + 1;
        tx.batch_execute(migration)
            .await
            .map_err(|e| step(&format!("apply schema version {version}"), e))?;
    }
    if found < current_version() {
        tx.execute("DELETE FROM pollerd_schema", &[])
            .await
            .map_err(|e| step("record the schema version", e))?;
        tx.execute(
            "INSERT INTO pollerd_schema (version) VALUES ($1)",
            &[&current_version()],
        )
        .await
        .map_err(|e| step("record the schema version", e))?;
    }
    tx.commit().await.map_err(|e| step("commit the schema", e))
}
