//! What kt's role may do in an external database, read from the server's
//! own privilege functions: the minimum kt needs (README, "External
//! database") and the one right it should not have.
//!
//! - CONNECT on the database, CREATE on the schema `public` (kt's tables
//!   live there): `kt init` creates the schema, a later kt migrates it.
//! - Ownership of every table in `public`: migrations alter them, and a
//!   table owned by someone else is one kt cannot upgrade or restore.
//! - No superuser: kt's loader runs dumps as this role (DESIGN.md, "Trust
//!   before action"); a superuser could be made to run programs.
//! - CREATE on the database: only `kt restore` needs it (it loads into
//!   schemas of its own, then swaps), so its absence is a warning.

use crate::error::{Error, Result};

/// The role's standing in its database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grants {
    pub role: String,
    pub superuser: bool,
    pub connect: bool,
    pub create_in_public: bool,
    /// Tables in `public` owned by another role.
    pub foreign_tables: Vec<String>,
    /// CREATE on the database (new schemas): what `kt restore` needs.
    pub create_on_database: bool,
}

impl Grants {
    /// What is missing or too much, in one line (None: all is well).
    pub fn problem(&self) -> Option<String> {
        let mut problems = Vec::new();
        if self.superuser {
            problems.push(format!("the role {} is a superuser: give kt a role without superuser rights", self.role));
        }
        if !self.connect {
            problems.push(format!("the role {} lacks CONNECT on the database", self.role));
        }
        if !self.create_in_public {
            problems.push(format!("the role {} lacks CREATE on the schema public", self.role));
        }
        if !self.foreign_tables.is_empty() {
            problems.push(format!("tables not owned by {}: {}", self.role, self.foreign_tables.join(", ")));
        }
        (!problems.is_empty()).then(|| problems.join("; "))
    }

    /// What only some commands miss (None: nothing): `kt verify` says it
    /// without failing.
    pub fn warning(&self, database: &str) -> Option<String> {
        (!self.create_on_database).then(|| {
            format!(
                "the role {role} lacks CREATE on the database {database}: kt restore will refuse (it loads into a schema of its own); \
                 as the database's administrator: GRANT CREATE ON DATABASE {database} TO {role}",
                role = self.role
            )
        })
    }

    pub fn summary(&self) -> String {
        format!("role {} (no superuser) has CONNECT, CREATE on public and owns kt's tables", self.role)
    }
}

/// Reads the connected role's grants in the connected database.
pub fn read(db: &mut postgres::Client) -> Result<Grants> {
    let row = db
        .query_one(
            // A member of a superuser role, or of the roles that run
            // programs or write files on the database server, can do what
            // a superuser can: counted as one.
            "SELECT current_user::text, r.rolsuper OR EXISTS (SELECT 1 FROM pg_roles s \
                        WHERE s.oid <> r.oid \
                          AND (s.rolsuper OR s.rolname IN ('pg_execute_server_program', 'pg_write_server_files')) \
                          AND pg_has_role(current_user, s.oid, 'MEMBER')), \
                    has_database_privilege(current_database(), 'CONNECT'), \
                    has_schema_privilege('public', 'CREATE'), \
                    ARRAY(SELECT tablename::text FROM pg_tables \
                          WHERE schemaname = 'public' AND tableowner <> current_user ORDER BY 1), \
                    has_database_privilege(current_database(), 'CREATE') \
             FROM pg_roles r WHERE r.rolname = current_user",
            &[],
        )
        .map_err(|e| Error::env("cannot read the database role's grants").because(crate::storage::db_error_text(&e)))?;
    Ok(Grants {
        role: row.get(0),
        superuser: row.get(1),
        connect: row.get(2),
        create_in_public: row.get(3),
        foreign_tables: row.get(4),
        create_on_database: row.get(5),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_problem_is_named() {
        let good =
            Grants { role: "kt".into(), superuser: false, connect: true, create_in_public: true, foreign_tables: vec![], create_on_database: true };
        assert_eq!(good.problem(), None);
        assert_eq!(good.warning("ktdb"), None);
        // Without CREATE on the database: a warning, not a problem.
        let no_restore = Grants { create_on_database: false, ..good.clone() };
        assert_eq!(no_restore.problem(), None);
        let warning = no_restore.warning("ktdb").unwrap();
        assert!(warning.contains("CREATE on the database ktdb") && warning.contains("kt restore"), "{warning}");
        let bad = Grants { superuser: true, create_in_public: false, foreign_tables: vec!["deposits".into()], ..good };
        let text = bad.problem().unwrap();
        assert!(text.contains("superuser") && text.contains("CREATE") && text.contains("deposits"), "{text}");
        assert!(!text.contains("CONNECT"), "{text}");
    }
}
