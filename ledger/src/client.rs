//! The ledger as a [`LogClient`]: agents and nodes on the same machine use the file directly.

use chipledger_domain::fingerprint::GpuUuid;
use chipledger_domain::log::{AsOf, EnrolledSite, EntrySummary, InventoryGpu, LogClient, Receipt, MAX_LOCATION_PROOFS};
use chipledger_domain::merkle::Hash;
use chipledger_domain::records::RecordKind;
use chipledger_domain::Error as DomainError;
use time::OffsetDateTime;

use crate::{EntryFilter, Error, Ledger};

fn to_domain(e: Error) -> DomainError {
    match e {
        Error::Domain(d) => d,
        rejected @ Error::Rejected { .. } => DomainError::LogRejected(rejected.to_string()),
        other => DomainError::Log(other.to_string()),
    }
}

impl LogClient for Ledger {
    fn submit(&self, envelopes: &[Vec<u8>]) -> Result<Vec<Receipt>, DomainError> {
        self.append(envelopes).map_err(to_domain)
    }

    /// The latest checkpoint with the witnesses' cosignatures kept for it, as a server serves it.
    fn checkpoint(&self) -> Result<String, DomainError> {
        Ledger::cosigned_checkpoint(self).map(|(_, note)| note).map_err(to_domain)
    }

    fn inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<Hash>, DomainError> {
        Ledger::inclusion_proof(self, index, size).map_err(to_domain)
    }

    fn consistency_proof(&self, old: u64, new: u64) -> Result<Vec<Hash>, DomainError> {
        Ledger::consistency_proof(self, old, new).map_err(to_domain)
    }

    fn inventory(&self, as_of: AsOf) -> Result<Vec<InventoryGpu>, DomainError> {
        Ledger::inventory(self, as_of).map_err(to_domain)
    }

    fn inventory_by_serial(&self, serial: &str) -> Result<Vec<InventoryGpu>, DomainError> {
        Ledger::inventory_by_serial(self, serial).map_err(to_domain)
    }

    fn history(&self, uuid: &GpuUuid, latest: Option<usize>) -> Result<Vec<EntrySummary>, DomainError> {
        let filter = EntryFilter { gpu: Some(uuid.clone()), last: latest.map(|n| n as u64), ..Default::default() };
        self.entries(&filter).map_err(to_domain)
    }

    fn acquisitions(&self, serial: &str) -> Result<Vec<EntrySummary>, DomainError> {
        self.entries(&EntryFilter { serial: Some(serial.to_string()), ..Default::default() }).map_err(to_domain)
    }

    fn location_proofs(&self, host: Option<&str>, since: OffsetDateTime) -> Result<Vec<EntrySummary>, DomainError> {
        let filter = EntryFilter {
            kind: Some(RecordKind::LocationProof),
            located: host.map(str::to_string),
            since: Some(since),
            last: Some(MAX_LOCATION_PROOFS),
            ..Default::default()
        };
        self.entries(&filter).map_err(to_domain)
    }

    fn sites(&self) -> Result<Vec<EnrolledSite>, DomainError> {
        let keys = self.keys().map_err(to_domain)?;
        Ok(keys
            .into_iter()
            .filter(|k| {
                matches!(k.role, chipledger_domain::records::Role::Agent | chipledger_domain::records::Role::Landmark)
            })
            .filter_map(|k| {
                Some(EnrolledSite {
                    key_id: k.key_id,
                    role: k.role,
                    host: k.host?,
                    site: k.site,
                    enrolled_at: k.enrolled_at,
                    revoked_at: k.revoked_at,
                })
            })
            .collect())
    }

    fn entry(&self, index: u64) -> Result<EntrySummary, DomainError> {
        let found = self
            .entries(&EntryFilter { from: Some(index), limit: Some(1), ..Default::default() })
            .map_err(to_domain)?;
        found
            .into_iter()
            .find(|e| e.index == index)
            .ok_or_else(|| DomainError::IndexOutOfRange { index, size: self.size() })
    }
}
