//! The end of assembly: the report's manifest is written, staging removed, and a signed
//! download link handed out where the storage makes them (buckets).

use crate::error::{Error, Result};
use crate::staging::{ManifestPart, OutputManifest, PartManifest};
use reportjob_core::api::valid::Destination;
use reportjob_core::plan::Plan;
use reportjob_core::split::OutputFile;

use super::{DownloadLink, StageContext, to_json};

impl StageContext {
    /// Writes the manifest of the published report `composed` made of the parts
    /// `appended`, and removes the staging data.
    pub(super) async fn publish(
        &self,
        plan: &Plan,
        appended: Vec<PartManifest>,
        composed: crate::storage::Composed,
        files: Vec<OutputFile>,
    ) -> Result<OutputManifest> {
        let manifest = OutputManifest {
            location: self.storage.location(&self.layout.output),
            rows: appended.iter().map(|p| p.rows).sum(),
            bytes: composed.bytes,
            sha256: composed.sha256,
            run_id: plan.run_id.clone(),
            plan_digest: plan.digest.clone(),
            source: plan.source.description.clone(),
            columns: plan.source.columns.clone(),
            compression: plan.format.compression_name().to_string(),
            started_at: plan.created_at.clone(),
            finished_at: jiff::Timestamp::now().to_string(),
            server_side_copies: composed.server_side_copies,
            snapshot: self.snapshot.clone(),
            parts: appended
                .iter()
                .map(|p| ManifestPart {
                    index: p.index,
                    range: p.range.describe(),
                    rows: p.rows,
                    bytes: p.bytes,
                    crc32: p.crc32,
                    sha256: p.sha256.clone(),
                    started_at: p.started_at.clone(),
                    finished_at: p.finished_at.clone(),
                })
                .collect(),
            files,
        };
        let json = to_json(&manifest, "report manifest")?;
        self.storage
            .write_via(
                &self.layout.manifest_key(),
                json,
                &self.layout.scratch_prefix(),
            )
            .await?;
        self.storage
            .delete_prefix(&self.layout.staging_prefix())
            .await?;
        Ok(manifest)
    }

    /// A signed link to the report (to the manifest of a split report), for destinations
    /// that have them (buckets), valid for the spec's `urlExpirySeconds`.
    pub async fn download_link(&self) -> Result<Option<DownloadLink>> {
        let Destination::Bucket(bucket) = &self.spec.output.destination else {
            return Ok(None);
        };
        // A split report is its manifest, which links every file.
        let key = match self.spec.output.split {
            Some(_) => self.layout.manifest_key(),
            None => self.layout.output.clone(),
        };
        self.link_to(&key, bucket.url_expiry).await
    }

    /// A signed link to `key`, valid for `expires_in`, where the storage makes them.
    pub(super) async fn link_to(
        &self,
        key: &str,
        expires_in: std::time::Duration,
    ) -> Result<Option<DownloadLink>> {
        let issued = jiff::Timestamp::now();
        let url = self.storage.download_link(key, expires_in).await?;
        let expires_at = jiff::SignedDuration::try_from(expires_in)
            .ok()
            .and_then(|d| issued.checked_add(d).ok())
            .ok_or_else(|| {
                Error::Encoding(format!(
                    "a link issued at {issued} cannot expire {expires_in:?} later"
                ))
            })?;
        Ok(url.map(|url| DownloadLink { url, expires_at }))
    }
}
