//! The cluster's key material, made fresh for every cluster: a CA, the API server's serving
//! certificate, client certificates (the admin in `system:masters`, the API server's client
//! certificate for the kubelet endpoint), the node agent's serving certificate and the
//! service-account signing key. Written as PEM files under the cluster's directory.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};

/// A certificate and its key, as PEM.
pub struct Pem {
    pub cert: String,
    pub key: String,
}

/// Every certificate and key one cluster uses, and where each file is.
pub struct ClusterCerts {
    pub ca: Pem,
    pub apiserver: Pem,
    pub admin: Pem,
    pub kubelet_client: Pem,
    pub kubelet_serving: Pem,
    /// The service-account token signing key (ECDSA P-256, PKCS#8) and its public key
    /// (what the API server verifies tokens with: it reads no public key from a private
    /// key's PKCS#8 file).
    pub service_account_key: String,
    pub service_account_public_key: String,
    dir: PathBuf,
}

/// The names the API server answers to: loopback (where every client here connects), and
/// the `kubernetes` Service's names and ClusterIP (first address of the service range).
const APISERVER_NAMES: &[&str] = &[
    "127.0.0.1",
    "localhost",
    "10.0.0.1",
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
];

struct Ca {
    cert: Certificate,
    key: KeyPair,
}

fn leaf(
    ca: &Ca,
    common_name: &str,
    organization: Option<&str>,
    names: &[&str],
    usage: ExtendedKeyUsagePurpose,
) -> anyhow::Result<Pem> {
    let mut params =
        CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())?;
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    if let Some(o) = organization {
        params.distinguished_name.push(DnType::OrganizationName, o);
    }
    params.extended_key_usages = vec![usage];
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &ca.cert, &ca.key)?;
    Ok(Pem {
        cert: cert.pem(),
        key: key.serialize_pem(),
    })
}

impl ClusterCerts {
    /// Makes every certificate and key and writes them under `dir`.
    pub fn generate(dir: &Path) -> anyhow::Result<ClusterCerts> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "reportjob-testbed-ca");
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate()?;
        let cert = params.self_signed(&key)?;
        let ca = Ca { cert, key };
        let server = ExtendedKeyUsagePurpose::ServerAuth;
        let client = ExtendedKeyUsagePurpose::ClientAuth;
        let sa_key = KeyPair::generate()?;
        let certs = ClusterCerts {
            apiserver: leaf(&ca, "kube-apiserver", None, APISERVER_NAMES, server.clone())?,
            admin: leaf(
                &ca,
                "testbed-admin",
                Some("system:masters"),
                &[],
                client.clone(),
            )?,
            kubelet_client: leaf(
                &ca,
                "kube-apiserver-kubelet-client",
                Some("system:masters"),
                &[],
                client,
            )?,
            kubelet_serving: leaf(&ca, "node-agent", None, &["127.0.0.1", "localhost"], server)?,
            service_account_key: sa_key.serialize_pem(),
            service_account_public_key: sa_key.public_key_pem(),
            ca: Pem {
                cert: ca.cert.pem(),
                key: ca.key.serialize_pem(),
            },
            dir: dir.to_path_buf(),
        };
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        for (name, pem) in [
            ("ca", &certs.ca),
            ("apiserver", &certs.apiserver),
            ("admin", &certs.admin),
            ("kubelet-client", &certs.kubelet_client),
        ] {
            write(&dir.join(format!("{name}.crt")), &pem.cert)?;
            write(&dir.join(format!("{name}.key")), &pem.key)?;
        }
        write(&dir.join("sa.key"), &certs.service_account_key)?;
        write(&dir.join("sa.pub"), &certs.service_account_public_key)?;
        Ok(certs)
    }

    /// The path of a file written by [`ClusterCerts::generate`], e.g. `file("ca.crt")`.
    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

fn write(path: &Path, text: &str) -> anyhow::Result<()> {
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}
