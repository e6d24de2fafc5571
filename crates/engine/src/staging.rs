//! Reading and removing a run's staged data; its layout and manifests are the core's
//! ([`reportjob_core::staging`]).

use crate::error::Result;
use crate::storage::Storage;
use reportjob_core::plan::PartFormat;
pub use reportjob_core::staging::{
    BadRunId, CoverageError, Layout, MAX_RUN_ID_LEN, ManifestPart, OutputManifest, PartManifest,
    RunId, check_coverage, check_part, recorded_files,
};

/// Removes the parts of `chunks` and their manifests (the manifest first, so a crash in
/// between leaves a part without a manifest, which counts as not exported).
pub async fn remove_parts(
    storage: &dyn Storage,
    layout: &Layout,
    format: &PartFormat,
    chunks: &[usize],
) -> Result<()> {
    for &index in chunks {
        storage.delete(&layout.part_manifest_key(index)).await?;
        storage.delete(&layout.part_key(index, format)).await?;
    }
    Ok(())
}

/// Largest manifest read back (a manifest of 100 000 parts is about 30 MiB).
const MAX_MANIFEST_BYTES: usize = 64 << 20;

/// The report this run already published, when there is one: its manifest names this run
/// (and `plan_digest`, when given) and the report is there with the size it records. An
/// assembly run again after publishing (its pod killed before it exited) returns this
/// instead of failing for want of the staging data it removed.
pub async fn published_manifest(
    storage: &dyn Storage,
    layout: &Layout,
    plan_digest: Option<&str>,
) -> Result<Option<OutputManifest>> {
    let Some(bytes) = storage.read(&layout.manifest_key()).await? else {
        return Ok(None);
    };
    if bytes.len() > MAX_MANIFEST_BYTES {
        return Ok(None);
    }
    // Anything unreadable or of another run is not this run's result.
    let Ok(manifest) = serde_json::from_slice::<OutputManifest>(&bytes) else {
        return Ok(None);
    };
    if manifest.run_id.parse::<RunId>().ok().as_ref() != Some(&layout.run_id)
        || plan_digest.is_some_and(|d| d != manifest.plan_digest)
    {
        return Ok(None);
    }
    if manifest.files.is_empty() {
        let size = storage.size(&layout.output).await?;
        return Ok((size == Some(manifest.bytes)).then_some(manifest));
    }
    for (i, file) in manifest.files.iter().enumerate() {
        let key = reportjob_core::split::file_key(&layout.output, i + 1);
        if storage.location(&key) != file.location || storage.size(&key).await? != Some(file.bytes)
        {
            return Ok(None);
        }
    }
    Ok(Some(manifest))
}

/// The keys of the files the manifest at `layout`'s manifest key lists (the report itself
/// for one file), when it is readable: what a new report at the same place replaces.
pub async fn listed_files(storage: &dyn Storage, layout: &Layout) -> Result<Vec<String>> {
    let Some(bytes) = storage.read(&layout.manifest_key()).await? else {
        return Ok(Vec::new());
    };
    let Ok(manifest) = serde_json::from_slice::<OutputManifest>(&bytes) else {
        return Ok(Vec::new());
    };
    if manifest.files.is_empty() {
        return Ok(vec![layout.output.clone()]);
    }
    Ok((1..=manifest
        .files
        .len()
        .min(reportjob_core::stage_protocol::MAX_CHUNKS))
        .map(|n| reportjob_core::split::file_key(&layout.output, n))
        .collect())
}
