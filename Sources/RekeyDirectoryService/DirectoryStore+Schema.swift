import RekeySQLite
import RekeyPostgres

/// The directory's tables, as numbered migrations: a new version is appended, never edited.
extension DirectoryStore {
    package static let migrations = [
        SQLiteMigration(version: 1, name: "directory", sql: """
            CREATE TABLE roles (
                name TEXT PRIMARY KEY,
                staff INTEGER NOT NULL,
                builtin INTEGER NOT NULL
            );
            CREATE TABLE role_permissions (
                role TEXT NOT NULL REFERENCES roles (name) ON DELETE CASCADE,
                permission TEXT NOT NULL,
                PRIMARY KEY (role, permission)
            );
            INSERT INTO roles VALUES ('owner', 1, 1), ('admin', 1, 1), ('agent', 1, 1), ('collaborator', 1, 1), ('customer', 0, 1);
            INSERT INTO role_permissions VALUES ('owner', 'users.manage'), ('admin', 'users.manage');
            CREATE TABLE organizations (
                id TEXT PRIMARY KEY,
                name TEXT NOT NULL,
                name_key TEXT NOT NULL UNIQUE,
                domains TEXT NOT NULL DEFAULT '',
                created_at INTEGER NOT NULL
            );
            CREATE TABLE users (
                seq INTEGER PRIMARY KEY,
                id TEXT NOT NULL UNIQUE,
                name TEXT NOT NULL,
                role TEXT NOT NULL REFERENCES roles (name),
                organization_id TEXT REFERENCES organizations (id),
                state INTEGER NOT NULL,
                locale TEXT NOT NULL,
                password_hash TEXT,
                password_changed_at INTEGER,
                created_at INTEGER NOT NULL,
                updated_at INTEGER NOT NULL
            );
            CREATE INDEX users_by_role ON users (role, seq);
            CREATE INDEX users_by_organization ON users (organization_id, seq);
            CREATE TABLE emails (
                id TEXT PRIMARY KEY,
                user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
                address TEXT NOT NULL,
                normalized TEXT NOT NULL UNIQUE,
                is_primary INTEGER NOT NULL,
                verified INTEGER NOT NULL,
                created_at INTEGER NOT NULL
            );
            CREATE INDEX emails_by_user ON emails (user_id);
            CREATE UNIQUE INDEX emails_one_primary ON emails (user_id) WHERE is_primary = 1;
            CREATE VIRTUAL TABLE user_search USING fts5 (name, emails, tokenize = 'unicode61 remove_diacritics 2', prefix = '1 2 3');
            CREATE TABLE api_keys (
                id TEXT PRIMARY KEY,
                user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
                name TEXT NOT NULL,
                hash BLOB NOT NULL UNIQUE,
                created_at INTEGER NOT NULL,
                expires_at INTEGER NOT NULL,
                last_used_at INTEGER,
                revoked_at INTEGER
            );
            CREATE TABLE sessions (
                id TEXT PRIMARY KEY,
                user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
                hash BLOB NOT NULL UNIQUE,
                created_at INTEGER NOT NULL,
                expires_at INTEGER NOT NULL,
                revoked_at INTEGER
            );
            CREATE INDEX sessions_by_user ON sessions (user_id);
            CREATE TABLE audit (
                id INTEGER PRIMARY KEY,
                at INTEGER NOT NULL,
                actor_id TEXT NOT NULL,
                actor_address TEXT NOT NULL,
                action TEXT NOT NULL,
                target TEXT NOT NULL,
                detail TEXT NOT NULL
            );
            CREATE INDEX audit_by_target ON audit (target, at);
            """),
        SQLiteMigration(version: 2, name: "audit pages by id", sql: """
            DROP INDEX audit_by_target;
            CREATE INDEX audit_by_target ON audit (target, id);
            """),
        SQLiteMigration(version: 3, name: "search prefixes", sql: """
            CREATE TABLE search_prefixes (
                prefix TEXT NOT NULL,
                tier INTEGER NOT NULL,
                name_key TEXT NOT NULL,
                seq INTEGER NOT NULL,
                staff INTEGER NOT NULL,
                PRIMARY KEY (prefix, tier, name_key, seq)
            ) WITHOUT ROWID;
            CREATE INDEX search_prefixes_staff ON search_prefixes (prefix, tier, name_key, seq) WHERE staff = 1;
            CREATE TABLE directory_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
            INSERT INTO directory_meta SELECT 'search_prefixes_pending', '1' WHERE EXISTS (SELECT 1 FROM users);
            """),
        SQLiteMigration(version: 4, name: "sign-in failures", sql: """
            CREATE TABLE sign_in_failures (
                id INTEGER PRIMARY KEY,
                at INTEGER NOT NULL,
                client_address TEXT NOT NULL
            );
            CREATE INDEX sign_in_failures_by_address ON sign_in_failures (client_address, at);
            CREATE INDEX sign_in_failures_by_time ON sign_in_failures (at);
            """),
        SQLiteMigration(version: 5, name: "sign-in attempts per account", sql: """
            CREATE TABLE sign_in_account_failures (
                id INTEGER PRIMARY KEY,
                at INTEGER NOT NULL,
                account TEXT NOT NULL
            );
            CREATE INDEX sign_in_account_failures_by_account ON sign_in_account_failures (account, at);
            CREATE INDEX sign_in_account_failures_by_time ON sign_in_account_failures (at);
            """),
        SQLiteMigration(version: 6, name: "staged imports", sql: """
            CREATE TABLE imports (
                id TEXT PRIMARY KEY,
                import_key TEXT UNIQUE,
                partial INTEGER NOT NULL,
                actor_id TEXT NOT NULL,
                actor_address TEXT NOT NULL,
                state TEXT NOT NULL,
                created_at INTEGER NOT NULL,
                bytes INTEGER NOT NULL,
                outcome BLOB
            );
            CREATE TABLE import_chunks (
                import_id TEXT NOT NULL,
                sequence INTEGER NOT NULL,
                data BLOB NOT NULL,
                PRIMARY KEY (import_id, sequence)
            );
            """),
        // Filled in by `fillLookAlikeSkeletons` at start for addresses stored before.
        SQLiteMigration(version: 7, name: "look-alike skeletons", sql: """
            ALTER TABLE emails ADD COLUMN skeleton TEXT;
            CREATE INDEX emails_by_skeleton ON emails (skeleton);
            """),
        SQLiteMigration(version: 8, name: "session idle time, audit by actor", sql: """
            ALTER TABLE sessions ADD COLUMN last_seen_at INTEGER;
            CREATE INDEX audit_by_actor ON audit (actor_id, id);
            """),
    ]
}

/// The same tables on PostgreSQL, in the schema `rekey_directory`, as one first version: what
/// SQLite reached in eight. Integers are `BIGINT` (and flags 0/1, as on SQLite); text compares
/// byte by byte (`COLLATE "C"`), as SQLite's does, so that names sort and pages continue alike
/// whatever the server's locale. FTS5's `user_search` becomes a table with a `tsvector` of the
/// words as Rekey splits and folds them (``DirectoryStore/searchWords(_:)``), under a GIN index.
extension DirectoryStore {
    package static let postgresSchema = "rekey_directory"

    package static let postgresMigrations = [
        PostgresMigration(version: 1, name: "directory", statements: [
            """
            CREATE TABLE roles (
                name TEXT COLLATE "C" PRIMARY KEY,
                staff BIGINT NOT NULL,
                builtin BIGINT NOT NULL
            )
            """,
            """
            CREATE TABLE role_permissions (
                role TEXT COLLATE "C" NOT NULL REFERENCES roles (name) ON DELETE CASCADE,
                permission TEXT COLLATE "C" NOT NULL,
                PRIMARY KEY (role, permission)
            )
            """,
            "INSERT INTO roles VALUES ('owner', 1, 1), ('admin', 1, 1), ('agent', 1, 1), ('collaborator', 1, 1), ('customer', 0, 1)",
            "INSERT INTO role_permissions VALUES ('owner', 'users.manage'), ('admin', 'users.manage')",
            """
            CREATE TABLE organizations (
                id TEXT COLLATE "C" PRIMARY KEY,
                name TEXT COLLATE "C" NOT NULL,
                name_key TEXT COLLATE "C" NOT NULL UNIQUE,
                domains TEXT NOT NULL DEFAULT '',
                created_at BIGINT NOT NULL
            )
            """,
            """
            CREATE TABLE users (
                seq BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
                id TEXT COLLATE "C" NOT NULL UNIQUE,
                name TEXT COLLATE "C" NOT NULL,
                role TEXT COLLATE "C" NOT NULL REFERENCES roles (name),
                organization_id TEXT COLLATE "C" REFERENCES organizations (id),
                state BIGINT NOT NULL,
                locale TEXT NOT NULL,
                password_hash TEXT,
                password_changed_at BIGINT,
                created_at BIGINT NOT NULL,
                updated_at BIGINT NOT NULL
            )
            """,
            "CREATE INDEX users_by_role ON users (role, seq)",
            "CREATE INDEX users_by_organization ON users (organization_id, seq)",
            """
            CREATE TABLE emails (
                id TEXT COLLATE "C" PRIMARY KEY,
                user_id TEXT COLLATE "C" NOT NULL REFERENCES users (id) ON DELETE CASCADE,
                address TEXT NOT NULL,
                normalized TEXT COLLATE "C" NOT NULL UNIQUE,
                is_primary BIGINT NOT NULL,
                verified BIGINT NOT NULL,
                created_at BIGINT NOT NULL,
                skeleton TEXT COLLATE "C"
            )
            """,
            "CREATE INDEX emails_by_user ON emails (user_id)",
            "CREATE UNIQUE INDEX emails_one_primary ON emails (user_id) WHERE is_primary = 1",
            "CREATE INDEX emails_by_skeleton ON emails (skeleton)",
            """
            CREATE TABLE user_search (
                seq BIGINT PRIMARY KEY,
                name TEXT NOT NULL,
                emails TEXT NOT NULL,
                words TSVECTOR NOT NULL
            )
            """,
            "CREATE INDEX user_search_words ON user_search USING GIN (words)",
            """
            CREATE TABLE search_prefixes (
                prefix TEXT COLLATE "C" NOT NULL,
                tier BIGINT NOT NULL,
                name_key TEXT COLLATE "C" NOT NULL,
                seq BIGINT NOT NULL,
                staff BIGINT NOT NULL,
                PRIMARY KEY (prefix, tier, name_key, seq)
            )
            """,
            "CREATE INDEX search_prefixes_staff ON search_prefixes (prefix, tier, name_key, seq) WHERE staff = 1",
            "CREATE TABLE directory_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
            """
            CREATE TABLE api_keys (
                id TEXT COLLATE "C" PRIMARY KEY,
                user_id TEXT COLLATE "C" NOT NULL REFERENCES users (id) ON DELETE CASCADE,
                name TEXT NOT NULL,
                hash BYTEA NOT NULL UNIQUE,
                created_at BIGINT NOT NULL,
                expires_at BIGINT NOT NULL,
                last_used_at BIGINT,
                revoked_at BIGINT
            )
            """,
            """
            CREATE TABLE sessions (
                id TEXT COLLATE "C" PRIMARY KEY,
                user_id TEXT COLLATE "C" NOT NULL REFERENCES users (id) ON DELETE CASCADE,
                hash BYTEA NOT NULL UNIQUE,
                created_at BIGINT NOT NULL,
                expires_at BIGINT NOT NULL,
                revoked_at BIGINT,
                last_seen_at BIGINT
            )
            """,
            "CREATE INDEX sessions_by_user ON sessions (user_id)",
            """
            CREATE TABLE audit (
                id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
                at BIGINT NOT NULL,
                actor_id TEXT COLLATE "C" NOT NULL,
                actor_address TEXT NOT NULL,
                action TEXT NOT NULL,
                target TEXT COLLATE "C" NOT NULL,
                detail TEXT NOT NULL
            )
            """,
            "CREATE INDEX audit_by_target ON audit (target, id)",
            "CREATE INDEX audit_by_actor ON audit (actor_id, id)",
            """
            CREATE TABLE sign_in_failures (
                id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
                at BIGINT NOT NULL,
                client_address TEXT NOT NULL
            )
            """,
            "CREATE INDEX sign_in_failures_by_address ON sign_in_failures (client_address, at)",
            "CREATE INDEX sign_in_failures_by_time ON sign_in_failures (at)",
            """
            CREATE TABLE sign_in_account_failures (
                id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
                at BIGINT NOT NULL,
                account TEXT NOT NULL
            )
            """,
            "CREATE INDEX sign_in_account_failures_by_account ON sign_in_account_failures (account, at)",
            "CREATE INDEX sign_in_account_failures_by_time ON sign_in_account_failures (at)",
            """
            CREATE TABLE imports (
                id TEXT COLLATE "C" PRIMARY KEY,
                import_key TEXT UNIQUE,
                partial BIGINT NOT NULL,
                actor_id TEXT NOT NULL,
                actor_address TEXT NOT NULL,
                state TEXT NOT NULL,
                created_at BIGINT NOT NULL,
                bytes BIGINT NOT NULL,
                outcome BYTEA
            )
            """,
            """
            CREATE TABLE import_chunks (
                import_id TEXT COLLATE "C" NOT NULL,
                sequence BIGINT NOT NULL,
                data BYTEA NOT NULL,
                PRIMARY KEY (import_id, sequence)
            )
            """,
        ])
    ]
}
