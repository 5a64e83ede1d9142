//! Certificates made with openssl for one test: a private CA and leaves
//! it signs (a server for 127.0.0.1 and a name, a client for mTLS).

use std::path::{Path, PathBuf};
use std::process::Command;

pub fn openssl(args: &[&str]) {
    let out = Command::new("openssl").args(args).output().expect("openssl is installed");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

fn s(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 path")
}

/// A CA in `dir` (`ca.pem`, `ca.key`).
pub struct Ca {
    dir: PathBuf,
    pub cert: PathBuf,
    key: PathBuf,
}

impl Ca {
    /// Makes the CA, or reuses the one already in `dir`.
    pub fn new(dir: &Path, name: &str) -> Ca {
        std::fs::create_dir_all(dir).unwrap();
        let (cert, key) = (dir.join("ca.pem"), dir.join("ca.key"));
        if !cert.exists() {
            openssl(&[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "1",
                "-subj",
                &format!("/CN={name}"),
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
                "-keyout",
                s(&key),
                "-out",
                s(&cert),
            ]);
        }
        Ca { dir: dir.to_path_buf(), cert, key }
    }

    /// A leaf named `cn` (`cn.pem`, `cn.key`) with the given OpenSSL
    /// extension lines (e.g. `subjectAltName=IP:127.0.0.1`).
    pub fn leaf(&self, cn: &str, extensions: &str) -> (PathBuf, PathBuf) {
        let p = |ext: &str| self.dir.join(format!("{cn}.{ext}"));
        let (cert, key, csr, extfile) = (p("pem"), p("key"), p("csr"), p("ext"));
        std::fs::write(&extfile, extensions).unwrap();
        openssl(&[
            "req",
            "-new",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            &format!("/CN={cn}"),
            "-keyout",
            s(&key),
            "-out",
            s(&csr),
        ]);
        openssl(&[
            "x509",
            "-req",
            "-in",
            s(&csr),
            "-CA",
            s(&self.cert),
            "-CAkey",
            s(&self.key),
            "-CAcreateserial",
            "-days",
            "1",
            "-extfile",
            s(&extfile),
            "-out",
            s(&cert),
        ]);
        (cert, key)
    }

    /// A server certificate for 127.0.0.1 (and `dns`, if given).
    pub fn server(&self, cn: &str, dns: Option<&str>) -> (PathBuf, PathBuf) {
        let san = match dns {
            Some(name) => format!("subjectAltName=IP:127.0.0.1,DNS:{name}"),
            None => "subjectAltName=IP:127.0.0.1".to_string(),
        };
        self.leaf(cn, &format!("{san}\nextendedKeyUsage=serverAuth\n"))
    }

    /// A client certificate, for mTLS.
    pub fn client(&self, cn: &str) -> (PathBuf, PathBuf) {
        self.leaf(cn, "extendedKeyUsage=clientAuth\n")
    }
}
