//! The store's schema: migrations applied in order, the same numbered steps for SQLite (`PRAGMA
//! user_version` counts them) and Postgres (a migrations table does).

/// Schema migrations, applied in order; `user_version` says how many have run.
pub(super) const MIGRATIONS: [&str; 10] = [
    r#"
    CREATE TABLE lessons (
        id INTEGER PRIMARY KEY,
        project TEXT NOT NULL,
        bead_id TEXT NOT NULL,
        workflow_id TEXT NOT NULL,
        run_id TEXT NOT NULL,
        attempt INTEGER NOT NULL,
        commit_sha TEXT NOT NULL,
        category TEXT NOT NULL,
        summary TEXT NOT NULL,
        detail TEXT NOT NULL,
        file_paths TEXT NOT NULL,
        labels TEXT NOT NULL,
        bad_example TEXT NOT NULL,
        good_example TEXT NOT NULL,
        language TEXT NOT NULL,
        fingerprint TEXT NOT NULL,
        created_ms INTEGER NOT NULL,
        last_used_ms INTEGER NOT NULL DEFAULT 0,
        use_count INTEGER NOT NULL DEFAULT 0,
        UNIQUE (project, fingerprint)
    );
    CREATE VIRTUAL TABLE lessons_fts USING fts5(
        summary, detail, file_paths, labels, bad_example, language,
        content = 'lessons', content_rowid = 'id'
    );
    CREATE TRIGGER lessons_ai AFTER INSERT ON lessons BEGIN
        INSERT INTO lessons_fts (rowid, summary, detail, file_paths, labels, bad_example, language)
        VALUES (new.id, new.summary, new.detail, new.file_paths, new.labels, new.bad_example, new.language);
    END;
    CREATE TRIGGER lessons_ad AFTER DELETE ON lessons BEGIN
        INSERT INTO lessons_fts (lessons_fts, rowid, summary, detail, file_paths, labels, bad_example, language)
        VALUES ('delete', old.id, old.summary, old.detail, old.file_paths, old.labels, old.bad_example, old.language);
    END;
    CREATE TRIGGER lessons_au AFTER UPDATE OF summary, detail, file_paths, labels, bad_example, language ON lessons BEGIN
        INSERT INTO lessons_fts (lessons_fts, rowid, summary, detail, file_paths, labels, bad_example, language)
        VALUES ('delete', old.id, old.summary, old.detail, old.file_paths, old.labels, old.bad_example, old.language);
        INSERT INTO lessons_fts (rowid, summary, detail, file_paths, labels, bad_example, language)
        VALUES (new.id, new.summary, new.detail, new.file_paths, new.labels, new.bad_example, new.language);
    END;
    CREATE TABLE rules (
        rule_id TEXT PRIMARY KEY,
        lesson_id INTEGER NOT NULL REFERENCES lessons (id),
        project TEXT NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('accepted', 'rejected', 'retired')),
        reason TEXT NOT NULL,
        checks TEXT NOT NULL,
        yaml TEXT NOT NULL,
        path TEXT NOT NULL,
        commit_sha TEXT NOT NULL,
        created_ms INTEGER NOT NULL,
        updated_ms INTEGER NOT NULL
    );
"#,
    r#"
    CREATE TABLE groom_mutations (
        groom_workflow_id TEXT NOT NULL,
        groom_run_id TEXT NOT NULL,
        idx INTEGER NOT NULL,
        project TEXT NOT NULL,
        kind TEXT NOT NULL,
        bead_id TEXT NOT NULL,
        op TEXT NOT NULL,
        description TEXT NOT NULL,
        mutation TEXT NOT NULL,
        applied INTEGER NOT NULL,
        reason TEXT NOT NULL,
        created_id TEXT NOT NULL,
        created_ms INTEGER NOT NULL,
        PRIMARY KEY (groom_workflow_id, groom_run_id, idx)
    );
    CREATE INDEX groom_mutations_by_project ON groom_mutations (project, created_ms);
"#,
    r#"
    CREATE TABLE agent_usage (
        id INTEGER PRIMARY KEY,
        project TEXT NOT NULL,
        bead_id TEXT NOT NULL,
        workflow_id TEXT NOT NULL,
        run_id TEXT NOT NULL,
        role TEXT NOT NULL,
        attempt INTEGER NOT NULL,
        handoff INTEGER NOT NULL,
        provider TEXT NOT NULL,
        input_tokens INTEGER NOT NULL,
        output_tokens INTEGER NOT NULL,
        cost_usd REAL NOT NULL,
        duration_ms INTEGER NOT NULL,
        created_ms INTEGER NOT NULL
    );
    CREATE INDEX agent_usage_by_bead ON agent_usage (project, bead_id);
    CREATE INDEX agent_usage_by_time ON agent_usage (created_ms);
"#,
    r#"
    CREATE TABLE runs (
        workflow_id TEXT NOT NULL,
        run_id TEXT NOT NULL,
        project TEXT NOT NULL,
        bead_id TEXT NOT NULL,
        outcome TEXT NOT NULL,
        reason TEXT NOT NULL,
        attempts INTEGER NOT NULL,
        result TEXT NOT NULL,
        finished_ms INTEGER NOT NULL,
        PRIMARY KEY (workflow_id, run_id)
    );
    CREATE INDEX runs_by_project ON runs (project, finished_ms);
"#,
    // Usage a run reserves before its agent starts (settled with the real figures after), and
    // figures CHUM estimated because the agent reports none.
    r#"
    ALTER TABLE agent_usage ADD COLUMN reserved INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE agent_usage ADD COLUMN estimated INTEGER NOT NULL DEFAULT 0;
"#,
    // Which notification went to which target: each event goes to each target at most once.
    r#"
    CREATE TABLE notifications (
        event_id TEXT NOT NULL,
        target TEXT NOT NULL,
        sent_ms INTEGER NOT NULL,
        PRIMARY KEY (event_id, target)
    );
"#,
    // Costs CHUM computed from the reported tokens and a price (Codex reports no dollars).
    r#"
    ALTER TABLE agent_usage ADD COLUMN computed INTEGER NOT NULL DEFAULT 0;
"#,
    // Each finished run's gate verdicts and phase spans as rows, so the metrics' counters are SQL
    // aggregates over every run ever recorded (they only go up), not a scan of the newest runs'
    // JSON. Runs recorded before are filled in from their JSON.
    r#"
    CREATE TABLE run_gates (
        workflow_id TEXT NOT NULL,
        run_id TEXT NOT NULL,
        gate TEXT NOT NULL,
        passed INTEGER NOT NULL
    );
    CREATE INDEX run_gates_by_run ON run_gates (workflow_id, run_id);
    -- Covering indexes: the metrics' GROUP BY reads them in order, never the tables (the runs'
    -- rows hold each result's JSON).
    CREATE INDEX runs_by_outcome ON runs (project, outcome);
    CREATE INDEX run_gates_by_gate ON run_gates (gate, passed);
    CREATE TABLE run_phases (
        workflow_id TEXT NOT NULL,
        run_id TEXT NOT NULL,
        phase TEXT NOT NULL,
        seconds REAL NOT NULL
    );
    CREATE INDEX run_phases_by_run ON run_phases (workflow_id, run_id);
    CREATE INDEX run_phases_by_phase ON run_phases (phase, seconds);
    INSERT INTO run_gates (workflow_id, run_id, gate, passed)
        SELECT r.workflow_id, r.run_id,
               CASE WHEN json_extract(g.value, '$.gate') = 'named' AND COALESCE(json_extract(g.value, '$.name'), '') <> ''
                    THEN json_extract(g.value, '$.name')
                    ELSE COALESCE(json_extract(g.value, '$.gate'), 'unspecified') END,
               COALESCE(json_extract(g.value, '$.passed'), 0)
        FROM runs r, json_each(r.result, '$.gate_results') g
        WHERE json_valid(r.result);
    INSERT INTO run_phases (workflow_id, run_id, phase, seconds)
        SELECT r.workflow_id, r.run_id, COALESCE(json_extract(p.value, '$.phase'), 'unspecified'),
               (json_extract(p.value, '$.ended_ms') - json_extract(p.value, '$.started_ms')) / 1000.0
        FROM runs r, json_each(r.result, '$.phases') p
        WHERE json_valid(r.result)
          AND json_extract(p.value, '$.ended_ms') > 0
          AND json_extract(p.value, '$.ended_ms') >= json_extract(p.value, '$.started_ms');
"#,
    // The HTTP API's audit entries (each also appended to the worker's audit log file), so a
    // shared store holds every worker's.
    r#"
    CREATE TABLE audit (
        id INTEGER PRIMARY KEY,
        ts TEXT NOT NULL,
        who TEXT NOT NULL,
        action TEXT NOT NULL,
        target TEXT NOT NULL,
        result TEXT NOT NULL,
        remote TEXT NOT NULL
    );
"#,
    // The host a run's last attempt ran on (`[worker] several_hosts`; '' for one host), for the
    // per-host counts in /metrics.
    r#"
    ALTER TABLE runs ADD COLUMN host TEXT NOT NULL DEFAULT '';
    CREATE INDEX runs_by_host ON runs (project, host, outcome);
"#,
];

/// The same migrations for Postgres, number for number (a `chum_schema_migrations` row per
/// migration applied). Integers are BIGINT and reals DOUBLE PRECISION, as the store's queries send
/// and read them; flags stay 0/1 integers as in SQLite. Lesson search is a generated `tsvector`
/// (the `simple` configuration: lower-cased words, no stemming, like FTS5's default tokenizer)
/// with a GIN index, in place of FTS5.
pub(super) const POSTGRES_MIGRATIONS: [&str; 10] = [
    r#"
    CREATE TABLE lessons (
        id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        project TEXT NOT NULL,
        bead_id TEXT NOT NULL,
        workflow_id TEXT NOT NULL,
        run_id TEXT NOT NULL,
        attempt BIGINT NOT NULL,
        commit_sha TEXT NOT NULL,
        category TEXT NOT NULL,
        summary TEXT NOT NULL,
        detail TEXT NOT NULL,
        file_paths TEXT NOT NULL,
        labels TEXT NOT NULL,
        bad_example TEXT NOT NULL,
        good_example TEXT NOT NULL,
        language TEXT NOT NULL,
        fingerprint TEXT NOT NULL,
        created_ms BIGINT NOT NULL,
        last_used_ms BIGINT NOT NULL DEFAULT 0,
        use_count BIGINT NOT NULL DEFAULT 0,
        -- Every run of characters other than letters and digits splits words, as FTS5's unicode61
        -- does (Postgres' own parser would keep `calc.py` as one file-name token).
        search tsvector GENERATED ALWAYS AS (to_tsvector('simple', regexp_replace(
            summary || ' ' || detail || ' ' || file_paths || ' ' || labels || ' ' || bad_example || ' ' || language,
            '[^[:alnum:]]+', ' ', 'g'
        ))) STORED,
        UNIQUE (project, fingerprint)
    );
    CREATE INDEX lessons_search ON lessons USING GIN (search);
    CREATE TABLE rules (
        rule_id TEXT PRIMARY KEY,
        lesson_id BIGINT NOT NULL REFERENCES lessons (id),
        project TEXT NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('accepted', 'rejected', 'retired')),
        reason TEXT NOT NULL,
        checks TEXT NOT NULL,
        yaml TEXT NOT NULL,
        path TEXT NOT NULL,
        commit_sha TEXT NOT NULL,
        created_ms BIGINT NOT NULL,
        updated_ms BIGINT NOT NULL
    );
"#,
    r#"
    CREATE TABLE groom_mutations (
        groom_workflow_id TEXT NOT NULL,
        groom_run_id TEXT NOT NULL,
        idx BIGINT NOT NULL,
        project TEXT NOT NULL,
        kind TEXT NOT NULL,
        bead_id TEXT NOT NULL,
        op TEXT NOT NULL,
        description TEXT NOT NULL,
        mutation TEXT NOT NULL,
        applied BIGINT NOT NULL,
        reason TEXT NOT NULL,
        created_id TEXT NOT NULL,
        created_ms BIGINT NOT NULL,
        PRIMARY KEY (groom_workflow_id, groom_run_id, idx)
    );
    CREATE INDEX groom_mutations_by_project ON groom_mutations (project, created_ms);
"#,
    r#"
    CREATE TABLE agent_usage (
        id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        project TEXT NOT NULL,
        bead_id TEXT NOT NULL,
        workflow_id TEXT NOT NULL,
        run_id TEXT NOT NULL,
        role TEXT NOT NULL,
        attempt BIGINT NOT NULL,
        handoff BIGINT NOT NULL,
        provider TEXT NOT NULL,
        input_tokens BIGINT NOT NULL,
        output_tokens BIGINT NOT NULL,
        cost_usd DOUBLE PRECISION NOT NULL,
        duration_ms BIGINT NOT NULL,
        created_ms BIGINT NOT NULL
    );
    CREATE INDEX agent_usage_by_bead ON agent_usage (project, bead_id);
    CREATE INDEX agent_usage_by_time ON agent_usage (created_ms);
"#,
    r#"
    CREATE TABLE runs (
        workflow_id TEXT NOT NULL,
        run_id TEXT NOT NULL,
        project TEXT NOT NULL,
        bead_id TEXT NOT NULL,
        outcome TEXT NOT NULL,
        reason TEXT NOT NULL,
        attempts BIGINT NOT NULL,
        result TEXT NOT NULL,
        finished_ms BIGINT NOT NULL,
        PRIMARY KEY (workflow_id, run_id)
    );
    CREATE INDEX runs_by_project ON runs (project, finished_ms);
"#,
    r#"
    ALTER TABLE agent_usage ADD COLUMN reserved BIGINT NOT NULL DEFAULT 0;
    ALTER TABLE agent_usage ADD COLUMN estimated BIGINT NOT NULL DEFAULT 0;
"#,
    r#"
    CREATE TABLE notifications (
        event_id TEXT NOT NULL,
        target TEXT NOT NULL,
        sent_ms BIGINT NOT NULL,
        PRIMARY KEY (event_id, target)
    );
"#,
    r#"
    ALTER TABLE agent_usage ADD COLUMN computed BIGINT NOT NULL DEFAULT 0;
"#,
    // As SQLite's 8th; the backfill reads the runs' JSON with jsonb (a result that is not a JSON
    // object adds no rows, as `json_valid` skips it there).
    r#"
    CREATE TABLE run_gates (
        workflow_id TEXT NOT NULL,
        run_id TEXT NOT NULL,
        gate TEXT NOT NULL,
        passed BIGINT NOT NULL
    );
    CREATE INDEX run_gates_by_run ON run_gates (workflow_id, run_id);
    CREATE INDEX runs_by_outcome ON runs (project, outcome);
    CREATE INDEX run_gates_by_gate ON run_gates (gate, passed);
    CREATE TABLE run_phases (
        workflow_id TEXT NOT NULL,
        run_id TEXT NOT NULL,
        phase TEXT NOT NULL,
        seconds DOUBLE PRECISION NOT NULL
    );
    CREATE INDEX run_phases_by_run ON run_phases (workflow_id, run_id);
    CREATE INDEX run_phases_by_phase ON run_phases (phase, seconds);
    INSERT INTO run_gates (workflow_id, run_id, gate, passed)
        SELECT r.workflow_id, r.run_id,
               CASE WHEN g ->> 'gate' = 'named' AND COALESCE(g ->> 'name', '') <> ''
                    THEN g ->> 'name'
                    ELSE COALESCE(g ->> 'gate', 'unspecified') END,
               CASE WHEN g ->> 'passed' = 'true' THEN 1 ELSE 0 END
        FROM runs r, jsonb_array_elements(
            CASE WHEN jsonb_typeof(r.result::jsonb -> 'gate_results') = 'array'
                 THEN r.result::jsonb -> 'gate_results' ELSE '[]'::jsonb END) g;
    INSERT INTO run_phases (workflow_id, run_id, phase, seconds)
        SELECT r.workflow_id, r.run_id, COALESCE(p ->> 'phase', 'unspecified'),
               ((p ->> 'ended_ms')::bigint - (p ->> 'started_ms')::bigint) / 1000.0
        FROM runs r, jsonb_array_elements(
            CASE WHEN jsonb_typeof(r.result::jsonb -> 'phases') = 'array'
                 THEN r.result::jsonb -> 'phases' ELSE '[]'::jsonb END) p
        WHERE (p ->> 'ended_ms')::bigint > 0
          AND (p ->> 'ended_ms')::bigint >= (p ->> 'started_ms')::bigint;
"#,
    r#"
    CREATE TABLE audit (
        id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        ts TEXT NOT NULL,
        who TEXT NOT NULL,
        action TEXT NOT NULL,
        target TEXT NOT NULL,
        result TEXT NOT NULL,
        remote TEXT NOT NULL
    );
"#,
    // The host a run's last attempt ran on (`[worker] several_hosts`; '' for one host), for the
    // per-host counts in /metrics.
    r#"
    ALTER TABLE runs ADD COLUMN host TEXT NOT NULL DEFAULT '';
    CREATE INDEX runs_by_host ON runs (project, host, outcome);
"#,
];
