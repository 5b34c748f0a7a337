//! The contact registration page's database calls: the token lookup (a
//! read, served by a passive too) and the key's storage with the token's
//! single use (a write, under [`Pool::write`]'s HA rules).

use super::{Answer, DbError, Pool};
use crate::registration::key::CheckedKey;
use crate::registration::token::{self, Consumed, Lookup};

impl Pool {
    /// Where the token with this hash stands.
    pub async fn contact_token(&self, token_hash: &[u8; 32]) -> Result<Lookup, DbError> {
        let c = self.conn().await?;
        Ok(token::lookup(&c.client, token_hash).await?)
    }

    /// Uses the token and stores the key as its contact's, in one
    /// statement ([`token::CONSUME_SQL`]); refused tokens change nothing.
    pub async fn register_contact_key(&self, token_hash: &[u8; 32], key: &CheckedKey) -> Result<Consumed, DbError> {
        self.write(None, |c| async move { token::consume(&c.client, token_hash, key).await }).await
    }
}

/// A registration is written without a request id: its answer is never
/// recorded, only named when the passive does not confirm it.
impl Answer for Consumed {
    fn encode(&self) -> String {
        match self {
            Consumed::Stored(_) => "stored".into(),
            Consumed::Refused(_) => "refused".into(),
        }
    }
    fn decode(_: &str) -> Option<Self> {
        None
    }
}
