//! Images for the real registries: a hand-made OCI layout (an image index of two platforms, and a
//! plain manifest, with the annotations a test asks for) pushed by `skopeo copy`, digests kept.
//!
//! ```ignore
//! let layout = OciLayout::new();
//! let plain = layout.add_manifest("plain", &[("io.registry-db.challenge", "x")]);
//! let multi = layout.add_index("multi");
//! push(&layout, "plain", &registry, "team/app:1.0", None);
//! ```

use std::fs;
use std::io::Write;
use std::path::Path;
use std::process::Command;

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

const INSTALL_HINT: &str = "install it with `apt-get install -y skopeo` (see ../shared/TOOLS.md)";

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

/// A blob as it was written: its digest and bytes.
#[derive(Debug, Clone)]
pub struct Blob {
    pub digest: String,
    pub bytes: Vec<u8>,
}

/// An OCI image layout in a temporary directory (`oci-layout`, `index.json`, `blobs/sha256/`).
pub struct OciLayout {
    dir: tempfile::TempDir,
    /// `index.json`'s entries: each a descriptor with its `org.opencontainers.image.ref.name`.
    refs: std::cell::RefCell<Vec<Value>>,
}

impl Default for OciLayout {
    fn default() -> Self {
        Self::new()
    }
}

impl OciLayout {
    pub fn new() -> OciLayout {
        let dir = tempfile::Builder::new()
            .prefix("oci-layout-")
            .tempdir()
            .unwrap();
        fs::create_dir_all(dir.path().join("blobs/sha256")).unwrap();
        fs::write(
            dir.path().join("oci-layout"),
            r#"{"imageLayoutVersion":"1.0.0"}"#,
        )
        .unwrap();
        let layout = OciLayout {
            dir,
            refs: Default::default(),
        };
        layout.write_index();
        layout
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    fn blob(&self, bytes: Vec<u8>) -> Blob {
        let digest = format!("sha256:{}", hex(&Sha256::digest(&bytes)));
        let path = self.dir.path().join("blobs/sha256").join(&digest[7..]);
        fs::write(path, &bytes).unwrap();
        Blob { digest, bytes }
    }

    /// An image manifest for one platform (a config and one empty gzipped layer).
    fn image(&self, arch: &str, variant: Option<&str>, annotations: &[(&str, &str)]) -> Blob {
        // An empty tar is two 512-byte zero blocks.
        let tar = vec![0u8; 1024];
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&tar).unwrap();
        let layer = self.blob(gz.finish().unwrap());
        let mut config = json!({
            "architecture": arch, "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": [format!("sha256:{}", hex(&Sha256::digest(&tar)))]},
            "config": {}
        });
        if let Some(v) = variant {
            config["variant"] = json!(v);
        }
        let config = self.blob(serde_json::to_vec(&config).unwrap());
        let mut manifest = json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config.digest, "size": config.bytes.len()},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": layer.digest, "size": layer.bytes.len()}],
        });
        if !annotations.is_empty() {
            let map: serde_json::Map<String, Value> = annotations
                .iter()
                .map(|(k, v)| (k.to_string(), json!(v)))
                .collect();
            manifest["annotations"] = Value::Object(map);
        }
        self.blob(serde_json::to_vec(&manifest).unwrap())
    }

    /// A plain image manifest (linux/amd64) under `tag`, with `annotations`.
    pub fn add_manifest(&self, tag: &str, annotations: &[(&str, &str)]) -> Blob {
        let manifest = self.image("amd64", None, annotations);
        self.add_ref(tag, OCI_MANIFEST, &manifest);
        manifest
    }

    /// An image index of linux/amd64 and linux/arm64/v8 under `tag`.
    pub fn add_index(&self, tag: &str) -> Blob {
        let amd = self.image("amd64", None, &[]);
        let arm = self.image("arm64", Some("v8"), &[]);
        let index = json!({
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [
                {"mediaType": OCI_MANIFEST, "digest": amd.digest, "size": amd.bytes.len(),
                 "platform": {"os": "linux", "architecture": "amd64"}},
                {"mediaType": OCI_MANIFEST, "digest": arm.digest, "size": arm.bytes.len(),
                 "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"}},
            ],
        });
        let index = self.blob(serde_json::to_vec(&index).unwrap());
        self.add_ref(tag, OCI_INDEX, &index);
        index
    }

    fn add_ref(&self, tag: &str, media_type: &str, blob: &Blob) {
        self.refs.borrow_mut().push(json!({
            "mediaType": media_type, "digest": blob.digest, "size": blob.bytes.len(),
            "annotations": {"org.opencontainers.image.ref.name": tag},
        }));
        self.write_index();
    }

    fn write_index(&self) {
        let index =
            json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": *self.refs.borrow()});
        fs::write(
            self.dir.path().join("index.json"),
            serde_json::to_vec(&index).unwrap(),
        )
        .unwrap();
    }
}

/// `skopeo copy --all --preserve-digests` of `layout`'s `tag` to `http://{registry}/{dest}`
/// (`dest` is `repo:tag`), with `creds` (`user:password`) when the registry wants them.
///
/// # Panics
/// When skopeo is missing (with the command that installs it) or the copy fails.
pub fn push(layout: &OciLayout, tag: &str, registry_url: &str, dest: &str, creds: Option<&str>) {
    let host = registry_url
        .strip_prefix("http://")
        .expect("a plain-http test registry");
    let mut cmd = Command::new("skopeo");
    cmd.args([
        "--insecure-policy",
        "copy",
        "--all",
        "--preserve-digests",
        "--retry-times",
        "0",
    ])
    .arg("--dest-tls-verify=false")
    .env("HOME", layout.path())
    .env_remove("HTTP_PROXY")
    .env_remove("HTTPS_PROXY")
    .env_remove("http_proxy")
    .env_remove("https_proxy");
    match creds {
        Some(c) => cmd.args(["--dest-creds", c]),
        None => cmd.arg("--dest-no-creds"),
    };
    cmd.arg(format!("oci:{}:{tag}", path_str(layout.path())))
        .arg(format!("docker://{host}/{dest}"));
    let out = cmd.output().unwrap_or_else(|e| {
        panic!("`skopeo` is needed by this test but could not be run ({e}); {INSTALL_HINT}")
    });
    assert!(
        out.status.success(),
        "skopeo copy of {tag} to {host}/{dest} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("temporary paths are UTF-8")
}
